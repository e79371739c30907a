"""The one timing harness: two models' forward passes interleaved, so that drift of the machine hits
both alike; medians and the speed-up."""

import statistics
import time
from collections.abc import Callable, Sequence

from .prediction import device_of, eval_mode, synchronize


def forward_pass(model, batches: Sequence) -> None:
    """One pass over the batches, forward only, outputs discarded: what `wall_speedup` times. `model`: a
    module (on its device, in evaluation mode) or any callable taking a batch's fields."""
    device = device_of(model)
    with eval_mode(model):
        for batch in batches:
            model(**{k: v.to(device) for k, v in batch.items()})
        synchronize(device)


def spread(total: int, n: int) -> list[int]:
    """`n` indices spread evenly over range(total), all of them when n >= total: a subset to time that
    samples every part of an ordered split (the BBC test split is grouped by topic, so its first
    articles are all business)."""
    if n >= total:
        return list(range(total))
    return [i * total // n for i in range(n)]


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def wall_speedup(
    full_fn: Callable[[], object], tr_fn: Callable[[], object], repeats: int = 3,
    warm: tuple[Callable[[], object], Callable[[], object]] | None = None,
) -> tuple[float, float, float]:
    """Time two zero-argument callables interleaved (full, tr, full, tr, ...) after one warm-up call
    each, so that drift of the machine hits both alike. `warm`: a short call of each, run untimed just
    before each of its timed calls (right after the other's call, a call runs slower for a while).
    Returns the median seconds of each and full / tr."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats} must be at least 1")
    full_fn()
    tr_fn()
    warm_full, warm_tr = warm or (lambda: None, lambda: None)
    full_times, tr_times = [], []
    for _ in range(repeats):
        warm_full()
        full_times.append(_timed(full_fn))
        warm_tr()
        tr_times.append(_timed(tr_fn))
    full, tr = statistics.median(full_times), statistics.median(tr_times)
    return full, tr, full / tr


def timed_side_by_side(model, full_model, batches: Sequence, n: int, repeats: int) -> dict:
    """Wall-clock fields of a result: a forward pass over `batches` (n examples) by each model,
    interleaved, `repeats` times after a warm-up pass each, each timed pass after the model's first batch
    untimed; all None when `repeats` is 0."""
    if repeats <= 0:
        return {"wall_speedup": None, "latency_ms": None, "throughput_per_s": None, "full_latency_ms": None}
    full_s, tr_s, ratio = wall_speedup(
        lambda: forward_pass(full_model, batches), lambda: forward_pass(model, batches), repeats,
        warm=(lambda: forward_pass(full_model, batches[:1]), lambda: forward_pass(model, batches[:1])),
    )
    return {"wall_speedup": round(ratio, 4), "latency_ms": round(tr_s / n * 1000, 3),
            "throughput_per_s": round(n / tr_s, 2), "full_latency_ms": round(full_s / n * 1000, 3)}
