"""`trbert eval`: the comparison with the full model printed and written as JSON, in float32, bfloat16 and int8, and its errors."""

import json

import pytest
from builders import CSV_COLUMNS, run_cli


# ---------------------------------------------------------------------------- eval
def test_eval_prints_the_comparison_and_writes_json(run, tmp_path, capsys):
    path = tmp_path / "results" / "joint.json"
    status, out, _ = run_cli(["eval", "--model", run.out / "joint", "--data", run.test_csv, *CSV_COLUMNS,
                              "--batch-size", "8", "--timing-repeats", "1", "--json", path, "--no-progress"], capsys)
    assert status == 0
    for field in ["accuracy:", "full accuracy:", "difference:", "95% CI", "kept per step:", "FLOPs speed-up:",
                  "wall speed-up:", "40 examples", "max length 64"]:
        assert field in out, (field, out)
    assert "keep_threshold=0 (the same weights, every token kept" in out  # says what the full model is

    report = json.loads(path.read_text())
    assert report["command"].startswith("trbert eval --model")
    tr, full = report["records"]
    assert tr["method"] == "tr" and full["method"] == "full"
    assert tr["n_examples"] == full["n_examples"] == 40 and tr["batch_size"] == 8 and tr["max_length"] == 64
    assert 0 <= tr["score"] <= 1 and tr["score"] == tr["accuracy"] and full["score"] == tr["full_accuracy"]
    assert tr["ci_low"] <= tr["accuracy_diff"] <= tr["ci_high"]
    assert tr["accuracy_diff"] == pytest.approx(tr["accuracy"] - tr["full_accuracy"])
    assert len(tr["kept_fraction"]) == 1 and 0 <= tr["kept_fraction"][0] <= 1
    assert tr["flops_speedup"] > 0 and tr["wall_speedup"] > 0 and tr["latency_ms"] > 0
    assert full["flops_speedup"] == 1.0 and full["kept_fraction"] is None
    assert f"{tr['flops_speedup']:.2f}x" in out


def test_eval_in_bfloat16_agrees_with_float32(run, tmp_path, capsys):
    common = ["eval", "--model", run.out / "joint", "--full-model", run.out / "finetune", "--data", run.test_csv,
              *CSV_COLUMNS, "--timing-repeats", "0", "--no-progress"]
    reports = {}
    for dtype in ("float32", "bfloat16"):
        path = tmp_path / f"{dtype}.json"
        status, out, err = run_cli([*common, "--dtype", dtype, "--json", path], capsys)
        assert status == 0, err
        assert f"cpu, {dtype}" in out
        reports[dtype] = json.loads(path.read_text())["records"]
    for single, half in zip(reports["float32"], reports["bfloat16"]):
        assert single["dtype"] == "float32" and half["dtype"] == "bfloat16"
        # bfloat16 keeps 8 bits of mantissa: a few predictions and keep decisions may flip, not more.
        assert abs(single["accuracy"] - half["accuracy"]) <= 0.1
        if single["kept_fraction"]:
            assert half["kept_fraction"][0] == pytest.approx(single["kept_fraction"][0], abs=0.1)


def test_eval_in_int8_quantizes_both_models(run, tmp_path, capsys):
    common = ["eval", "--model", run.out / "joint", "--full-model", run.out / "finetune", "--data", run.test_csv,
              *CSV_COLUMNS, "--timing-repeats", "0", "--no-progress"]
    reports = {}
    for options in ([], ["--int8"]):
        path = tmp_path / f"int8-{bool(options)}.json"
        status, out, err = run_cli([*common, *options, "--json", path], capsys)
        assert status == 0, err
        assert ("cpu, int8" in out) == bool(options)
        reports[bool(options)] = json.loads(path.read_text())["records"]
    assert [r["dtype"] for r in reports[True]] == ["int8", "int8"]
    for single, int8 in zip(reports[False], reports[True]):
        assert abs(single["accuracy"] - int8["accuracy"]) <= 0.1  # int8 noise flips a few, not more
    assert reports[True][0]["flops_speedup"] > 1  # the TR model still drops tokens

    status, _, err = run_cli([*common, "--int8", "--dtype", "bfloat16"], capsys)
    assert status == 2 and "--int8 quantizes float32 weights" in err and "Traceback" not in err


def test_eval_against_a_given_full_model_and_of_a_plain_model(run, capsys):
    common = ["--data", run.test_csv, *CSV_COLUMNS, "--timing-repeats", "0", "--no-progress"]
    status, out, _ = run_cli(["eval", "--model", run.out / "joint", "--full-model", run.out / "finetune", *common],
                             capsys)
    assert status == 0
    assert f"full model:      {run.out / 'finetune'}\n" in out and "not timed" in out

    status, out, _ = run_cli(["eval", "--model", run.out / "finetune", *common], capsys)
    assert status == 0
    assert "itself" in out and "FLOPs speed-up:  1.00x" in out and "no reduction" in out
    assert "difference:      +0.00 points" in out


def test_eval_errors(run, tmp_path, capsys):
    cases = [
        (["--model", tmp_path / "nowhere"], "--model"),
        (["--model", run.out / "joint", "--data", run.test_csv, "--split", "test", *CSV_COLUMNS], "--split"),
        (["--model", run.out / "joint", "--data", tmp_path / "missing.csv"], "missing.csv: file not found"),
    ]
    for options, message in cases:
        status, _, err = run_cli(["eval", *options], capsys)
        assert status == 2 and message in err and "Traceback" not in err, err


def test_eval_and_predict_cut_texts_where_the_model_was_trained(run, tmp_path):
    from trbert.cli.common import fit_max_length, load_config

    config = load_config(run.out / "joint")
    assert config.trained_max_length == 64  # the run's stages: the tiny backbone's limit
    config.trained_max_length = 32
    assert fit_max_length(None, config, "m") == 32 and fit_max_length(48, config, "m") == 48
    config.trained_max_length = None  # a model trained elsewhere: the model's limit, at most 512
    assert fit_max_length(None, config, "m") == 64
