"""The speed benchmark's core on a tiny random model: batches, records, the ideal and wall-clock ratios, its outputs."""

import json

import pytest
import torch
from builders import CLS, SEP, TINY, tiny_config
from transformers import BertConfig, BertModel

import trbert
from trbert.benchmarks import speed as bench_speed
from trbert.io import write_json


def test_random_batch_mixes_lengths_with_one_full_example():
    ids, mask = bench_speed.random_batch(64, 8, seed=3, token_range=(5, 99), cls_id=CLS, sep_id=SEP)
    lengths = mask.sum(1)
    assert ids.shape == mask.shape == (8, 64)
    assert lengths.max() == 64 and lengths.min() >= 16 and len(set(lengths.tolist())) > 1
    assert (ids[:, 0] == CLS).all()
    assert (ids[torch.arange(8), lengths - 1] == SEP).all()
    assert (ids[mask == 0] == 0).all()
    assert torch.equal(ids, bench_speed.random_batch(64, 8, seed=3, token_range=(5, 99), cls_id=CLS, sep_id=SEP)[0])
    assert bench_speed.random_batch(32, 1)[1].sum() == 32


def test_measure_records_on_a_tiny_model():
    tr = trbert.TRBertModel(tiny_config()).eval()
    plain = BertModel(BertConfig(**TINY)).eval()
    ids, mask = bench_speed.random_batch(48, 4, token_range=(5, 99), cls_id=CLS, sep_id=SEP)
    setting = bench_speed.fraction_setting([0.5, 0.25])
    rounds = []
    records = bench_speed.measure(plain, tr, ids, mask, [setting], repeats=2, model_name="tiny",
                                  on_round=lambda: rounds.append(1))
    assert len(rounds) == 3  # warm-up and two rounds
    assert [r["setting"] for r in records] == ["plain", "first 0.5,0.25 packed"]
    base, reduced = records
    assert base["method"] == "full" and reduced["method"] == "tr"
    assert base["kept_fraction"] is None and base["flops_speedup"] == 1.0 and base["wall_speedup"] == 1.0
    assert reduced["kept_fraction"] == pytest.approx([0.5, 0.25], abs=0.03)
    assert reduced["flops_speedup"] > 1
    for r in records:
        assert r["batch_size"] == r["n_examples"] == 4 and r["max_length"] == 48 and r["model"] == "tiny"
        assert r["latency_ms"] > 0 and r["throughput_per_s"] > 0 and r["wall_speedup"] > 0
        assert set(r) >= {"data", "split", "metric", "score", "peak_mem_mb"}
    # The setting is applied for each call only: the model is left as it was.
    assert isinstance(tr.encoder.strategy, trbert.PolicyStrategy) and tr.config.execution == "packed"


def test_full_keep_costs_more_than_plain_at_batch_one():
    tr = trbert.TRBertModel(tiny_config()).eval()
    plain = BertModel(BertConfig(**TINY)).eval()
    ids, mask = bench_speed.random_batch(32, 1, token_range=(5, 99), cls_id=CLS, sep_id=SEP)
    full_keep = bench_speed.default_settings()[0]
    _, record = bench_speed.measure(plain, tr, ids, mask, [full_keep], repeats=1)
    assert record["kept_fraction"] == [1.0, 1.0]
    assert record["flops_speedup"] < 1  # the policies run on top of every layer
    assert tr.config.keep_threshold == 0.5


def test_outputs_are_written(tmp_path):
    record = {"max_length": 128, "batch_size": 1, "setting": "first 0.5,0.25 packed", "kept_fraction": [0.5, 0.25],
              "latency_ms": 10.0, "wall_speedup": 1.5, "flops_speedup": 2.0}
    report = {"command": "trbert speed --quick", "date": "2025-01-01", "records": [record],
              "machine": {"cpu": "cpu", "threads": 2, "gpu": None},
              "versions": {"trbert": "0", "torch": "0", "transformers": "0"}}
    table = bench_speed.text_table(report["records"])
    assert "first 0.5,0.25 packed" in table and "0.75" in table  # wall / ideal

    write_json(tmp_path / "out" / "speed.json", report)
    assert json.loads((tmp_path / "out" / "speed.json").read_text()) == report
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["speed.json"]  # no temporary file left

    md = tmp_path / "RESULTS.md"
    md.write_text("# Results\n\nintro\n\n<!-- speed:begin -->\nSTALE TABLE\n<!-- speed:end -->\n\n## Accuracy\nkept\n")
    bench_speed.update_results_md(md, bench_speed.markdown_section(report, 7, 4))
    text = md.read_text()
    assert "STALE" not in text and "intro" in text and "## Accuracy\nkept" in text
    assert text.count("<!-- speed:begin -->") == 1 and "`trbert speed --quick`" in text
    assert "| 128 | 1 | first 0.5,0.25 packed | 0.50, 0.25 | 10.0 | 1.50x | 2.00x | 0.75 |" in text

    fresh = tmp_path / "new" / "RESULTS.md"
    bench_speed.update_results_md(fresh, "<!-- speed:begin -->\nx\n<!-- speed:end -->")
    assert fresh.read_text().startswith("# Results\n\n<!-- speed:begin -->")


def test_gpu_reports_get_their_own_section_and_file(tmp_path):
    record = {"max_length": 512, "batch_size": 128, "setting": "first 0.5,0.25 packed", "kept_fraction": [0.5, 0.25],
              "latency_ms": 10.0, "wall_speedup": 1.5, "flops_speedup": 2.0, "device": "NVIDIA H100", "dtype": "bfloat16"}
    report = {"command": "trbert speed --device cuda --dtype bfloat16", "date": "2026-12-07", "records": [record],
              "machine": {"cpu": "cpu", "isa": "AVX2", "threads": 16, "gpu": "NVIDIA H100"},
              "versions": {"trbert": "0", "torch": "0", "transformers": "0"}}
    assert bench_speed.section_name(report) == "speed-cuda-bfloat16"
    assert bench_speed.default_json("cuda", "bfloat16") == "docs/results/speed_minilm_cuda_bfloat16.json"
    assert bench_speed.default_json("cpu", "float32") == bench_speed.DEFAULT_JSON
    md = tmp_path / "RESULTS.md"
    md.write_text("<!-- speed:begin -->\nCPU TABLE\n<!-- speed:end -->\n")
    section = bench_speed.markdown_section(report, 7, 4)
    assert section.startswith("<!-- speed-cuda-bfloat16:begin -->\n## Speed: all-MiniLM-L6-v2 on NVIDIA H100, bfloat16")
    bench_speed.update_results_md(md, section)
    text = md.read_text()
    assert "CPU TABLE" in text and text.count("speed-cuda-bfloat16:begin") == 1 and "waited for on the GPU" in text


def test_measure_records_device_and_dtype():
    tr = trbert.TRBertModel(tiny_config()).eval().to(torch.bfloat16)
    plain = BertModel(BertConfig(**TINY)).eval().to(torch.bfloat16)
    ids, mask = bench_speed.random_batch(32, 2, token_range=(5, 99), cls_id=CLS, sep_id=SEP)
    records = bench_speed.measure(plain, tr, ids, mask, [bench_speed.fraction_setting([0.5, 0.25])], repeats=1,
                                  extra={"device": "cpu", "dtype": "bfloat16"})
    assert all(r["device"] == "cpu" and r["dtype"] == "bfloat16" for r in records)


def test_another_backbone_gets_its_own_section_and_file():
    record = {"max_length": 512, "batch_size": 1, "setting": "plain", "kept_fraction": None, "latency_ms": 9.0,
              "wall_speedup": 1.0, "flops_speedup": 1.0, "model": "all-mpnet-base-v2"}
    report = {"command": "trbert speed --backbone all-mpnet-base-v2", "date": "2026-12-07", "records": [record],
              "machine": {"cpu": "cpu", "isa": "AVX2", "threads": 2, "gpu": None},
              "versions": {"trbert": "0", "torch": "0", "transformers": "0"}}
    assert bench_speed.section_name(report) == "speed-all-mpnet-base-v2"
    assert bench_speed.default_json("cpu", "float32", "all-mpnet-base-v2") == "docs/results/speed_all-mpnet-base-v2.json"
    assert "## Speed: all-mpnet-base-v2 on CPU" in bench_speed.markdown_section(report, 7, 4)
