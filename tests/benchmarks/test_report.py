"""The results page's machinery: tables, sections of the results markdown, plots."""

import pytest

from trbert.benchmarks.report import display_name, plot_tradeoff

RECORDS = [
    {"method": "tr", "setting": "alpha 0.5", "accuracy": 0.90, "full_accuracy": 0.91, "accuracy_diff": -0.01,
     "ci_low": -0.03, "ci_high": 0.01, "flops_speedup": 1.8, "wall_speedup": 1.5},
    {"method": "tr", "setting": "alpha 1", "accuracy": 0.88, "full_accuracy": 0.91, "accuracy_diff": -0.03,
     "ci_low": -0.05, "ci_high": -0.01, "flops_speedup": 2.6, "wall_speedup": 2.0},
    {"method": "truncation", "setting": "first 64 tokens", "accuracy": 0.80, "full_accuracy": 0.91,
     "accuracy_diff": -0.11, "ci_low": -0.14, "ci_high": -0.08, "flops_speedup": 2.0, "wall_speedup": None},
]


def test_plot_tradeoff_draws_a_panel_per_measured_speedup(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "plots" / "tradeoff.png"
    assert plot_tradeoff(RECORDS, path, "tiny") == ["flops_speedup", "wall_speedup"]
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 1000
    assert [p.name for p in path.parent.iterdir()] == ["tradeoff.png"]  # no temporary file left
    untimed = [{**r, "wall_speedup": None} for r in RECORDS]
    assert plot_tradeoff(untimed, path, "tiny") == ["flops_speedup"]  # no wall clock measured: no such panel
    with pytest.raises(ValueError):
        plot_tradeoff(RECORDS, path, "tiny", axes=["latency_ms"])


def test_the_page_names_tr_bert():
    assert [display_name(m) for m in ("tr", "tr (reduction at layers 0,3)", "truncation", "tr_int8")] == \
        ["TR-BERT", "TR-BERT (reduction at layers 0,3)", "truncation", "tr_int8"]
