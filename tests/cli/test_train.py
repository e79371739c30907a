"""`trbert train / eval / predict` end to end on the tiny synthetic task, in-process, with a tiny backbone.

One `train --stage all` run (module fixture) feeds every test; the text and label columns of its CSV
have other names than the defaults, so that the column options are exercised too.
"""

import io
import json
from contextlib import redirect_stdout
from types import SimpleNamespace

import pytest
import torch
from builders import CSV_COLUMNS, LABELS, synthetic, write_csv
from transformers import AutoModelForSequenceClassification, BertForSequenceClassification

import trbert
from trbert.cli import build_parser, main
from trbert.cli.train import stage_settings

NAMES = sorted(LABELS)  # a file's class names are its labels, sorted: blue, none, red
EPOCHS, BATCH, N_TRAIN, LOG_EVERY = 2, 16, 96, 2
STEPS = EPOCHS * N_TRAIN // BATCH
@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """A tiny model gains nothing from threads; on a busy machine, competing ones slow it 100-fold."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run(backbone, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("cli")
    train_csv = write_csv(root / "train.csv", synthetic(N_TRAIN, seed=1))
    test_csv = write_csv(root / "test.csv", synthetic(40, seed=2))
    out = root / "run"
    argv = ["train", "--stage", "all", "--out", str(out), "--backbone", backbone, "--data", str(train_csv), *CSV_COLUMNS,
            "--epochs", str(EPOCHS), "--lr", "3e-3", "--batch-size", str(BATCH), "--samples", "2",
            "--reduction-layers", "0", "--logging-steps", str(LOG_EVERY), "--save-steps", "4", "--no-progress"]
    stdout = io.StringIO()
    with redirect_stdout(stdout):
        status = main(argv)
    return SimpleNamespace(root=root, out=out, argv=argv, status=status, stdout=stdout.getvalue(), test_csv=test_csv)


def run_cli(argv, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# ---------------------------------------------------------------------------- train
def test_train_all_writes_the_three_stages_and_their_logs(run):
    assert run.status == 0, run.stdout
    for stage in ("finetune", "policy", "joint"):
        assert f"{stage}: wrote {run.out / stage}" in run.stdout
        model = AutoModelForSequenceClassification.from_pretrained(run.out / stage)
        assert [model.config.id2label[i] for i in range(3)] == NAMES
        expected = BertForSequenceClassification if stage == "finetune" else trbert.TRBertForSequenceClassification
        assert type(model) is expected
        if stage != "finetune":
            assert model.config.reduction_layers == [0]

        lines = [json.loads(line) for line in (run.out / f"{stage}-log.jsonl").read_text().splitlines()]
        assert [line["step"] for line in lines] == list(range(LOG_EVERY, STEPS + 1, LOG_EVERY))
        for line in lines:
            assert {"step", "epoch", "loss", "learning_rate"} <= set(line)
            if stage != "finetune":
                assert {"reward", "kept", "task_loss"} <= set(line) and 0 <= line["kept"] <= 1
        assert lines[-1]["epoch"] == pytest.approx(EPOCHS)
        assert (run.out / f"{stage}-checkpoints" / f"checkpoint-{STEPS}" / "trainer_state.json").is_file()


def test_rerun_skips_the_finished_stages(run, capsys):
    files = [p for p in run.out.rglob("*") if p.is_file() and "-checkpoints" not in str(p)]
    stamps = {p: p.stat().st_mtime_ns for p in files}
    status, out, _ = run_cli(run.argv, capsys)
    assert status == 0
    for stage in ("finetune", "policy", "joint"):
        assert f"{stage}: {run.out / stage} is complete (it has config.json): skipped" in out
    assert "training" not in out
    assert stamps == {p: p.stat().st_mtime_ns for p in files}


def test_single_stage_options_are_checked(run, tmp_path, capsys):
    out = tmp_path / "x"
    cases = [
        (["--stage", "policy"], "--stage policy needs --source"),
        (["--stage", "policy", "--source", tmp_path / "nowhere"], "no such folder"),
        (["--stage", "policy", "--source", tmp_path], "not a model folder (it has no config.json)"),
        (["--stage", "joint", "--source", run.out / "policy"], "--stage joint needs --teacher"),
        (["--stage", "joint", "--source", run.out / "finetune", "--teacher", run.out / "finetune"],
         "not a policy folder"),
        (["--stage", "finetune", "--source", run.out / "finetune"], "--source is not used with --stage finetune"),
        (["--stage", "joint", "--source", run.out / "policy", "--teacher", run.out / "finetune",
          "--reduction-layers", "1"], "--reduction-layers is set when the policy or the exits are trained"),
        (["--stage", "policy", "--source", run.out / "finetune", "--reduction-layers", "5"],
         "--reduction-layers 5: give increasing layer indices in [0, 1]"),
        (["--stage", "capped", "--source", run.out / "joint", "--teacher", run.out / "finetune"],
         "--stage capped needs --max-keep-ratio"),
        (["--stage", "joint", "--source", run.out / "policy", "--teacher", run.out / "finetune",
          "--max-keep-ratio", "0.5"], "--max-keep-ratio is set with --stage capped only"),
        (["--stage", "capped", "--source", run.out / "finetune", "--teacher", run.out / "finetune",
          "--max-keep-ratio", "0.5"], "not a joint folder"),
        (["--stage", "capped", "--source", run.out / "joint", "--max-keep-ratio", "0.5"],
         "--stage capped needs --teacher"),
        (["--stage", "policy", "--source", run.out / "finetune", "--freeze-policies"],
         "--freeze-policies is set with --stage joint or all only"),
        (["--stage", "policy", "--source", run.out / "finetune", "--head-lr", "1e-3"],
         "--head-lr is set with --stage finetune or all only"),
    ]
    for options, message in cases:
        status, _, err = run_cli(["train", "--out", out, "--data", run.test_csv, *CSV_COLUMNS, *options], capsys)
        assert status == 2 and message in err, (options, err)
        assert err.startswith("trbert train: error: ") and "Traceback" not in err and err.count("\n") == 1
    assert not out.exists()


def test_capped_stage_writes_a_model_that_keeps_within_its_cap(run, tmp_path, capsys):
    out = tmp_path / "capped"
    status, stdout, err = run_cli(["train", "--stage", "capped", "--source", run.out / "joint", "--teacher",
                                   run.out / "finetune", "--max-keep-ratio", "0.3", "--out", out, "--data",
                                   run.test_csv, *CSV_COLUMNS, "--epochs", "1", "--logging-steps", "1", "--no-progress"], capsys)
    assert status == 0, err
    assert f"capped: wrote {out}" in stdout
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert isinstance(model, trbert.TRBertForSequenceClassification) and model.config.max_keep_ratio == 0.3
    lines = [json.loads(line) for line in (tmp_path / "capped-log.jsonl").read_text().splitlines()]
    assert lines and all(0 < line["kept"] <= 0.3 + 0.1 for line in lines)  # [CLS] is kept beyond the cap


def test_joint_stage_with_frozen_policies_keeps_the_policy_stage_policies(run, tmp_path, capsys):
    out = tmp_path / "joint-frozen"
    status, stdout, err = run_cli(["train", "--stage", "joint", "--source", run.out / "policy", "--teacher",
                                   run.out / "finetune", "--freeze-policies", "--out", out, "--data", run.test_csv,
                                   *CSV_COLUMNS, "--epochs", "1", "--logging-steps", "1", "--no-progress"], capsys)
    assert status == 0, err
    assert f"joint: wrote {out}" in stdout
    policy = AutoModelForSequenceClassification.from_pretrained(run.out / "policy").state_dict()
    joint = AutoModelForSequenceClassification.from_pretrained(out).state_dict()
    assert all(torch.equal(v, policy[k]) for k, v in joint.items() if ".policy." in k)
    assert any(not torch.equal(v, policy[k]) for k, v in joint.items() if ".layer." in k)
    lines = [json.loads(line) for line in (tmp_path / "joint-frozen-log.jsonl").read_text().splitlines()]
    assert lines and all("reward" not in line and 0 < line["kept"] <= 1 for line in lines)  # no REINFORCE term


def test_bad_csv_exits_2_with_a_message_naming_the_file(backbone, tmp_path, capsys):  # noqa: F811
    bad = tmp_path / "no-labels.csv"
    bad.write_text("text,topic\nw1 w2 red,red\nw3 w4,none\n")
    out = tmp_path / "model"
    status, _, err = run_cli(["train", "--stage", "finetune", "--out", out, "--backbone", backbone, "--data", bad],
                             capsys)
    assert status == 2
    assert f"{bad}: no column 'label'" in err and "--label-column" in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert not out.exists()


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


# ---------------------------------------------------------------------------- predict
def test_predict_prints_a_table_and_json_lines(run, tmp_path, capsys):
    model = run.out / "joint"
    status, out, _ = run_cli(["predict", "--model", model, "w1 red w2", "w3 w4"], capsys)
    assert status == 0
    header, *rows = out.splitlines()
    assert header.split() == ["#", "label", "p(blue)", "p(none)", "p(red)", "tokens", "kept", "text"]
    assert len(rows) == 2 and rows[0].startswith("0  ") and rows[0].rstrip().endswith("w1 red w2")
    assert "5 > " in rows[0] and "4 > " in rows[1]  # [CLS] w1 red w2 [SEP] > tokens kept after the step

    texts = tmp_path / "texts.txt"
    texts.write_text("w1 blue w2 w3\nw5\n\n")  # trailing blank lines are not texts
    status, out, _ = run_cli(["predict", "--model", model, "w1 red w2", "--file", texts, "--json"], capsys)
    assert status == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["index"] for line in lines] == [0, 1, 2]
    assert [line["tokens"] for line in lines] == [5, 6, 3]
    for line in lines:
        assert set(line) == {"index", "label", "probabilities", "tokens", "kept_tokens"}
        assert list(line["probabilities"]) == NAMES and line["label"] in NAMES
        assert sum(line["probabilities"].values()) == pytest.approx(1, abs=1e-4)
        assert line["label"] == max(line["probabilities"], key=line["probabilities"].get)
        assert len(line["kept_tokens"]) == 1 and 1 <= line["kept_tokens"][0] <= line["tokens"]

    status, out, _ = run_cli(["predict", "--model", run.out / "finetune", "--file", run.test_csv,
                              "--text-column", "sentence", "--json"], capsys)
    assert status == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 40 and all(line["kept_tokens"] is None for line in lines)  # a plain model keeps all


def test_predict_rejects_empty_texts_with_a_clear_message(run, tmp_path, capsys):
    model = run.out / "joint"
    status, out, err = run_cli(["predict", "--model", model, "w1 w2", "   "], capsys)
    assert status == 2 and out == ""
    assert err == ("trbert predict: error: texts[1] is empty or only whitespace: there is nothing to classify "
                   "(text argument 2)\n")

    texts = tmp_path / "texts.txt"
    texts.write_text("w1 w2\n\nw3\n")
    status, _, err = run_cli(["predict", "--model", model, "--file", texts], capsys)
    assert status == 2 and f"({texts} line 2)" in err and "Traceback" not in err

    status, _, err = run_cli(["predict", "--model", model], capsys)
    assert status == 2 and "nothing to classify" in err

    status, _, err = run_cli(["predict", "--model", model, "--file", run.test_csv], capsys)
    assert status == 2 and "no column 'text'" in err and "--text-column" in err


# ---------------------------------------------------------------------------- help
@pytest.mark.parametrize("command,options", [
    ("train", ["--stage", "--out", "--source", "--teacher", "--backbone", "--data", "--alpha", "--samples",
               "--reduction-layers", "--max-examples", "-log.jsonl", "torchrun", "--task", "--guide-rate",
               "--protect-question", "early-exit", "--exit-threshold", "--skipped-as-keys",
               "--attention-dropout", "--bf16"]),
    ("eval", ["--model", "--full-model", "--split", "--timing-repeats", "--json", "keep_threshold=0",
              "question-answering", "entity F1"]),
    ("predict", ["--model", "TEXT", "--file", "--json", "--text-column", "--question", "--context"]),
    ("wnut", ["--run-dir", "--report", "entity F1"]),
    ("run", ["--preset", "--run-dir", "--alphas", "--report", "quick", "full", "tradeoff.png"]),
])
def test_help_reads_well(command, options, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: trbert {command}") and "examples:" in out
    for option in options:
        assert option in out, option
    assert command in build_parser().format_help()  # listed in `trbert --help`


def test_head_lr_option_reaches_the_fine_tune_only():
    args = build_parser().parse_args(["train", "--stage", "all", "--out", "x", "--lr", "5e-5", "--head-lr", "1e-3"])
    assert stage_settings(args, "finetune", 64).head_learning_rate == 1e-3
    assert stage_settings(args, "finetune", 64).learning_rate == 5e-5
    assert stage_settings(args, "policy", 64).head_learning_rate is None
    assert stage_settings(build_parser().parse_args(["train", "--stage", "finetune", "--out", "x"]),
                          "finetune", 64).head_learning_rate is None
