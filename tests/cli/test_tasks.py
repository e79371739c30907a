"""`trbert train / eval / predict --task question-answering | token-classification`, in-process,
on a SQuAD file written here and on WNUT-16 (a tiny backbone, a few steps: the plumbing, not quality)."""

import json

import pytest
from builders import synthetic_squad

from trbert.cli import main


def write_squad(path, rows):
    paragraphs = [{"context": r["context"], "qas": [{"id": r["id"], "question": r["question"], "answers": [
        {"text": t, "answer_start": s} for t, s in zip(r["answers"]["text"], r["answers"]["answer_start"])]}]}
        for r in rows]
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "synthetic", "paragraphs": paragraphs}]}))
    return path


def cli(argv, capsys):
    capsys.readouterr()
    status = main([str(a) for a in argv])
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.fixture(scope="module")
def squad_run(backbone, tmp_path_factory):
    root = tmp_path_factory.mktemp("squad-cli")
    train = write_squad(root / "train.json", synthetic_squad(160, seed=1))
    dev = write_squad(root / "dev.json", synthetic_squad(30, seed=2))
    status = main(["train", "--stage", "all", "--task", "question-answering", "--data", str(train), "--out",
                   str(root / "run"), "--backbone", backbone, "--epochs", "1", "--lr", "3e-3", "--batch-size", "16",
                   "--samples", "2", "--max-length", "32", "--reduction-layers", "0", "--protect-question",
                   "--no-progress"])
    assert status == 0
    return root, dev


def test_qa_train_eval_predict(squad_run, capsys):
    root, dev = squad_run
    run = root / "run"
    config = json.loads((run / "joint" / "config.json").read_text())
    assert config["architectures"] == ["TRBertForQuestionAnswering"] and config["keep_first_segment"] is True
    status, out, _ = cli(["eval", "--task", "question-answering", "--model", run / "joint", "--full-model",
                          run / "finetune", "--data", dev, "--max-length", "32", "--timing-repeats", "1",
                          "--no-progress", "--json", root / "eval.json"], capsys)
    assert status == 0 and "exact match:" in out and "30 questions" in out and "wall speed-up:" in out
    record = json.loads((root / "eval.json").read_text())["records"][0]
    assert record["metric"] == "f1" and 0.0 <= record["score"] <= 1.0 and record["n_windows"] >= 30
    status, out, _ = cli(["predict", "--task", "question-answering", "--model", run / "joint", "--question", "w1 w2",
                          "--context", "w3 w4 red blue w5", "--json"], capsys)
    row = json.loads(out)
    assert status == 0 and row["answer"] == "w3 w4 red blue w5"[row["start"]:row["end"]] and row["windows"] == 1
    # The question's tokens ([CLS] w1 w2 [SEP]) are protected: never fewer kept than that.
    assert row["kept_tokens"][0][0] >= 4


@pytest.mark.parametrize("argv, message", [
    (["train", "--stage", "finetune", "--task", "question-answering", "--out", "x"], "give --data FILE.json"),
    (["train", "--stage", "finetune", "--task", "question-answering", "--data", "bbc", "--out", "x"], "SQuAD-format"),
    (["train", "--stage", "finetune", "--task", "token-classification", "--data", "bbc", "--out", "x"], "--data wnut"),
    (["predict", "--task", "question-answering", "--model", "M", "--question", "q"], "--context is missing"),
    (["predict", "--task", "question-answering", "--model", "M", "--question", " ", "--context", "c"],
     "--question is empty"),
])
def test_task_errors_are_clear(argv, message, capsys, tmp_path, backbone):
    argv = [backbone if a == "M" else a for a in argv]
    argv = [str(tmp_path / "x") if a == "x" else a for a in argv]
    status, _, err = cli(argv, capsys)
    assert status == 2 and message in err, err


def test_wnut_tagger_through_the_cli(backbone, tmp_path, capsys):
    out = tmp_path / "wnut"
    status, _, _ = cli(["train", "--stage", "all", "--task", "token-classification", "--out", out, "--backbone",
                        backbone, "--max-examples", "64", "--epochs", "1", "--batch-size", "16", "--samples", "2",
                        "--max-length", "32", "--no-progress"], capsys)
    assert status == 0
    config = json.loads((out / "joint" / "config.json").read_text())
    assert config["architectures"] == ["TRBertForTokenClassification"] and config["id2label"]["0"] == "O"
    status, text, _ = cli(["eval", "--task", "token-classification", "--model", out / "joint", "--full-model",
                           out / "finetune", "--max-examples", "40", "--max-length", "32", "--timing-repeats", "0",
                           "--no-progress"], capsys)
    assert status == 0 and "entity F1:" in text and "wnut test: 40 sentences" in text
    status, text, _ = cli(["predict", "--task", "token-classification", "--model", out / "joint", "--json",
                           "w1 w2 w3", "w4 w5"], capsys)
    rows = [json.loads(line) for line in text.splitlines()]
    assert status == 0 and [len(r["tags"]) for r in rows] == [3, 2] and rows[0]["words"] == ["w1", "w2", "w3"]


def test_early_exit_through_the_cli(backbone, tmp_path, capsys):
    out = tmp_path / "exit"
    status, text, _ = cli(["train", "--stage", "early-exit", "--task", "token-classification", "--out", out,
                           "--backbone", backbone, "--max-examples", "48", "--epochs", "1", "--batch-size", "16",
                           "--max-length", "32", "--exit-threshold", "0.3", "--skipped-as-keys", "--no-progress"],
                          capsys)
    assert status == 0 and "self-sampling: wrote" in text
    config = json.loads((out / "self-sampling" / "config.json").read_text())
    assert config["selection"] == "early_exit" and config["exit_threshold"] == 0.3 and config["skipped_as_keys"]
    status, text, _ = cli(["eval", "--task", "token-classification", "--model", out / "self-sampling",
                           "--full-model", out / "finetune", "--max-examples", "20", "--max-length", "32",
                           "--timing-repeats", "0", "--no-progress"], capsys)
    assert status == 0 and "entity F1:" in text


@pytest.mark.parametrize("argv, message", [
    (["train", "--stage", "exits", "--out", "x", "--source", "x"], "use it with --task token-classification"),
    (["train", "--stage", "self-sampling", "--task", "token-classification", "--out", "x"], "needs --source"),
])
def test_early_exit_stage_errors(argv, message, capsys, tmp_path):
    argv = [str(tmp_path / "x") if a == "x" else a for a in argv]
    status, _, err = cli(argv, capsys)
    assert status == 2 and message in err, err
