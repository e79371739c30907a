"""The results page's machinery: tables, sections of the results markdown, plots."""

import pytest
from builders import RECORDS

from trbert.benchmarks.report import display_name, plot_tradeoff


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
