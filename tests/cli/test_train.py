"""`trbert train`: every stage through the command line, re-runs that skip finished stages, checked options.

One `train --stage all` run (the session fixture `run` in cli/conftest.py) feeds these tests and those of
eval and predict; the text and label columns of its CSV have other names than the defaults, so that the
column options are exercised too."""

import json

import pytest
import torch
from builders import CSV_COLUMNS, LABELS, run_cli, synthetic, write_csv
from transformers import AutoModelForSequenceClassification, BertForSequenceClassification

import trbert
from trbert.cli import build_parser
from trbert.cli.train import stage_settings


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
        assert [line["step"] for line in lines] == list(range(run.log_every, run.steps + 1, run.log_every))
        for line in lines:
            assert {"step", "epoch", "loss", "learning_rate"} <= set(line)
            if stage == "policy":
                assert {"reward", "kept", "task_loss"} <= set(line) and 0 <= line["kept"] <= 1
            if stage == "joint":  # a classifier's joint stage keeps the policies frozen by default: no REINFORCE
                assert "reward" not in line and 0 < line["kept"] <= 1
        assert lines[-1]["epoch"] == pytest.approx(run.epochs)
        assert not (run.out / f"{stage}-checkpoints").exists()  # removed once the stage's folder was written

NAMES = sorted(LABELS)  # a file's class names are its labels, sorted: blue, none, red


def test_rerun_skips_the_finished_stages(run, capsys):
    files = [p for p in run.out.rglob("*") if p.is_file() and "-checkpoints" not in str(p)]
    stamps = {p: p.stat().st_mtime_ns for p in files}
    status, out, _ = run_cli(run.argv, capsys)
    assert status == 0
    for stage in ("finetune", "policy", "joint"):
        assert f"{stage}: {run.out / stage} is complete, trained from the same data and options: skipped" in out
    assert "training" not in out
    assert stamps == {p: p.stat().st_mtime_ns for p in files}


def test_rerun_with_other_data_or_options_is_refused(run, tmp_path, capsys):
    other = write_csv(tmp_path / "other.csv", synthetic(96, seed=9))
    for option, value, stage, what in [("--data", other, "finetune", "data"), ("--lr", "1e-3", "finetune", "settings"),
                                       ("--reduction-layers", "1", "policy", "options")]:
        argv = [str(a) for a in run.argv]
        argv[argv.index(option) + 1] = str(value)
        status, out, err = run_cli(argv, capsys)
        assert status == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        assert f"{run.out / stage} was trained from another {what} than this one gives" in err, err
        assert "write to another folder, or delete" in err and "training" not in out


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
         "--reduction-layers: reduction_layers=[5]: every index must lie in [0, 1] for a model with 2 layers"),
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
        (["--stage", "joint", "--source", run.out / "policy", "--teacher", run.out / "finetune", "--max-drop", "1"],
         "--max-drop trains the whole recipe to a budget: use it with --stage all"),
        (["--stage", "all", "--max-drop", "1", "--task", "token-classification"],
         "--max-drop scores candidates by accuracy: it trains classifiers only"),
        (["--stage", "all", "--alphas", "1", "2"], "--alphas and --validation belong to --max-drop"),
        (["--stage", "all", "--validation", run.test_csv], "--alphas and --validation belong to --max-drop"),
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


def test_the_joint_stage_freezes_a_classifiers_policies_unless_asked_to_tune_them(run, tmp_path, capsys):
    policy = AutoModelForSequenceClassification.from_pretrained(run.out / "policy").state_dict()
    default = AutoModelForSequenceClassification.from_pretrained(run.out / "joint").state_dict()
    assert all(torch.equal(v, policy[k]) for k, v in default.items() if ".policy." in k)
    assert any(not torch.equal(v, policy[k]) for k, v in default.items() if ".layer." in k)
    out = tmp_path / "joint-tuned"
    status, stdout, err = run_cli(["train", "--stage", "joint", "--source", run.out / "policy", "--teacher",
                                   run.out / "finetune", "--tune-policies", "--out", out, "--data", run.test_csv,
                                   *CSV_COLUMNS, "--epochs", "1", "--logging-steps", "1", "--no-progress"], capsys)
    assert status == 0, err
    assert f"joint: wrote {out}" in stdout
    tuned = AutoModelForSequenceClassification.from_pretrained(out).state_dict()
    assert any(not torch.equal(v, policy[k]) for k, v in tuned.items() if ".policy." in k)
    lines = [json.loads(line) for line in (tmp_path / "joint-tuned-log.jsonl").read_text().splitlines()]
    assert lines and all("reward" in line for line in lines)  # the paper's REINFORCE term
    status, _, err = run_cli(["train", "--stage", "joint", "--source", run.out / "policy", "--teacher",
                              run.out / "finetune", "--tune-policies", "--freeze-policies", "--out", out], capsys)
    assert status == 2 and "exclude each other" in err


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














def test_head_lr_option_reaches_the_fine_tune_only():
    args = build_parser().parse_args(["train", "--stage", "all", "--out", "x", "--lr", "5e-5", "--head-lr", "1e-3"])
    assert stage_settings(args, "finetune", 64).head_learning_rate == 1e-3
    assert stage_settings(args, "finetune", 64).learning_rate == 5e-5
    assert stage_settings(args, "policy", 64).head_learning_rate is None
    assert stage_settings(build_parser().parse_args(["train", "--stage", "finetune", "--out", "x"]),
                          "finetune", 64).head_learning_rate is None


def test_max_drop_keeps_the_fastest_candidate_within_the_budget(run, tmp_path, capsys):
    """`--stage all --max-drop`: the fine-tune (here the run's, found on disk and reused), a sweep of two
    alphas, each scored on the validation file; the table printed, the choice recorded where it says."""
    import shutil
    from pathlib import Path

    from trbert.budget import Candidate, choose

    out = tmp_path / "budget"
    shutil.copytree(run.out / "finetune", out / "finetune")
    argv = [option if option != str(run.out) else str(out) for option in run.argv]
    argv[argv.index("--stage") + 1] = "all"
    status, stdout, err = run_cli([*argv, "--max-drop", "5", "--alphas", "0.5", "4", "--validation", run.test_csv],
                                  capsys)
    assert status == 0, err
    assert "finetune: " in stdout and "is complete, trained from the same data and options: skipped" in stdout
    record = json.loads((out / "trbert-budget.json").read_text())
    assert record["max_drop"] == 5 and record["validation_examples"] == 40
    candidates = [Candidate(**c) for c in record["candidates"]]
    assert sorted(c.alpha for c in candidates) == [0.5, 4.0]
    assert all((out / f"alpha-{c.alpha:g}" / "joint" / "config.json").exists() for c in candidates)
    assert record["chosen"] == vars(choose(candidates, record["full_score"], 5))
    kept = record["chosen"]["folder"]
    assert json.loads((Path(kept) / "trbert-budget.json").read_text()) == record
    assert "validation  drop (points)  kept per step  FLOPs speed-up" in stdout and "kept: alpha=" in stdout
    assert kept in stdout


def test_the_recipe_placement_by_task():
    from types import SimpleNamespace

    from transformers import BertConfig

    from trbert.cli.train import freeze_policies, reduction_layers

    six = BertConfig(num_hidden_layers=6)
    def args(task, layers=None, freeze=False, tune=False):
        return SimpleNamespace(task=task, reduction_layers=layers, freeze_policies=freeze, tune_policies=tune)

    assert reduction_layers(args("classification"), six) == [0, 3]
    assert reduction_layers(args("question-answering"), six) == [1, 3]  # the paper's where not measured
    assert reduction_layers(args("classification", [2, 4]), six) == [2, 4]
    assert reduction_layers(args("classification"), trbert.TRBertConfig(num_hidden_layers=6, reduction_layers=[1, 5])) == [1, 5]
    assert freeze_policies(args("classification")) and not freeze_policies(args("token-classification"))
    assert not freeze_policies(args("classification", tune=True)) and freeze_policies(args("question-answering", freeze=True))
