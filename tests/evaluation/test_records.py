"""Results files: every record has the schema's fields, scores are fractions, the file is written whole."""

import json
import platform
import re

import pytest
import torch
from builders import RECORDS

import trbert
from trbert import evaluation
from trbert.evaluation import results_record, write_results_json


def test_write_results_json(tmp_path):
    records = [results_record(r, model="tiny", data="texts", split="test", n_examples=100) for r in RECORDS]
    path = tmp_path / "results" / "tiny.json"
    written = write_results_json(path, "tiny_benchmark", "trbert eval --tiny", records)
    report = json.loads(path.read_text())
    assert report == written
    assert list(report) == ["benchmark", "command", "date", "machine", "versions", "records"]
    assert report["benchmark"] == "tiny_benchmark" and report["command"] == "trbert eval --tiny"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", report["date"])
    assert isinstance(report["machine"]["cpu"], str) and report["machine"]["threads"] == torch.get_num_threads()
    assert report["machine"]["gpu"] is None
    assert set(report["versions"]) == {"trbert", "torch", "transformers"}
    assert report["versions"]["trbert"] == trbert.__version__
    first = report["records"][0]
    assert set(first) >= set(evaluation.RECORD_FIELDS)
    assert first["metric"] == "accuracy" and first["score"] == 0.90 and first["method"] == "tr"
    assert first["peak_mem_mb"] is None and first["model"] == "tiny"
    assert first["cpu_isa"] in ("amx", "avx512_bf16", "avx512", "avx2") or first["cpu_isa"] == platform.machine().lower()
    extra = write_results_json(path, "b", "c", [{**records[0], "cpu_isa": "avx2"}], budget={"max_drop": 1})
    assert extra["budget"] == {"max_drop": 1} and extra["records"][0]["cpu_isa"] == "avx2"
    assert [p.name for p in path.parent.iterdir()] == ["tiny.json"]

    with pytest.raises(ValueError, match="lacks"):
        write_results_json(path, "b", "c", [{"method": "tr"}])
    with pytest.raises(ValueError, match="score"):
        write_results_json(path, "b", "c", [{**records[0], "score": 90.0}])
