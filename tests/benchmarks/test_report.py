"""The results page's machinery: tables, sections of the results markdown, plots."""

import pytest

from trbert.benchmarks.report import plot_tradeoff

RECORDS = [
    {"method": "tr", "setting": "alpha 0.5", "accuracy": 0.90, "full_accuracy": 0.91, "accuracy_diff": -0.01,
     "ci_low": -0.03, "ci_high": 0.01, "flops_speedup": 1.8, "wall_speedup": 1.5},
    {"method": "tr", "setting": "alpha 1", "accuracy": 0.88, "full_accuracy": 0.91, "accuracy_diff": -0.03,
     "ci_low": -0.05, "ci_high": -0.01, "flops_speedup": 2.6, "wall_speedup": 2.0},
    {"method": "truncation", "setting": "first 64 tokens", "accuracy": 0.80, "full_accuracy": 0.91,
     "accuracy_diff": -0.11, "ci_low": -0.14, "ci_high": -0.08, "flops_speedup": 2.0, "wall_speedup": None},
]


@pytest.mark.parametrize("x", ["flops_speedup", "wall_speedup"])
def test_plot_tradeoff_writes_a_png(tmp_path, x):
    pytest.importorskip("matplotlib")
    path = tmp_path / "plots" / "tradeoff.png"
    plot_tradeoff(RECORDS, path, "tiny", x=x)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 1000
    assert [p.name for p in path.parent.iterdir()] == ["tradeoff.png"]  # no temporary file left
    with pytest.raises(ValueError):
        plot_tradeoff(RECORDS, path, "tiny", x="latency_ms")
