"""The timing harness: two models interleaved after a warm-up each; a subset that samples every part of a split."""

import pytest

from trbert.evaluation import (
    wall_speedup,
)


def test_wall_speedup_interleaves_after_one_warm_up_each():
    calls = []
    full, tr, ratio = wall_speedup(lambda: calls.append("full"), lambda: calls.append("tr"), repeats=3)
    assert calls == ["full", "tr"] * 4
    assert full > 0 and tr > 0 and ratio == pytest.approx(full / tr)
    with pytest.raises(ValueError):
        wall_speedup(lambda: None, lambda: None, repeats=0)


def test_each_timed_call_can_follow_an_untimed_warm_call_of_its_own():
    import time

    calls = []

    def warm(name):  # slow: it would dominate the timings if it were timed
        return lambda: (calls.append(f"warm {name}"), time.sleep(0.05))

    full, tr, _ = wall_speedup(lambda: calls.append("full"), lambda: calls.append("tr"), repeats=2,
                               warm=(warm("full"), warm("tr")))
    assert calls == ["full", "tr"] + ["warm full", "full", "warm tr", "tr"] * 2
    assert full < 0.05 and tr < 0.05


def test_spread_samples_every_part_of_an_ordered_split():
    from trbert.evaluation import spread

    assert spread(10, 4) == [0, 2, 5, 7]
    assert spread(3, 5) == [0, 1, 2]
    picked = spread(668, 96)
    assert len(set(picked)) == 96 and picked == sorted(picked) and picked[-1] >= 660
