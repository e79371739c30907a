"""`trbert predict`: a table or JSON Lines of labels, probabilities and kept tokens; clear messages for bad texts."""

import json
import shutil
import subprocess
import sys

import pytest
from builders import LABELS, run_cli, tiny_config, tiny_tokenizer

import trbert


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
        assert list(line["probabilities"]) == sorted(LABELS) and line["label"] in LABELS
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
    assert err == ("trbert predict: error: texts[1] is empty or only whitespace: there is nothing to read in it "
                   "(text argument 2)\n")

    texts = tmp_path / "texts.txt"
    texts.write_text("w1 w2\n\u200b\nw3\n")  # a line with only a zero-width space
    status, _, err = run_cli(["predict", "--model", model, "--file", texts], capsys)
    assert status == 2 and f"({texts} line 2)" in err and "invisible" in err and "Traceback" not in err

    status, _, err = run_cli(["predict", "--model", model], capsys)
    assert status == 2 and "nothing to classify" in err

    status, _, err = run_cli(["predict", "--model", model, "--file", run.test_csv], capsys)
    assert status == 2 and "no column 'text'" in err and "--text-column" in err


# ---------------------------------------------------------------------------- the user's inputs
@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    """A tiny TR token classifier saved with its tokenizer, as `trbert train` saves one."""
    folder = tmp_path_factory.mktemp("tagger")
    config = tiny_config(num_labels=3, id2label={0: "O", 1: "B-X", 2: "I-X"}, label2id={"O": 0, "B-X": 1, "I-X": 2})
    trbert.TRBertForTokenClassification(config).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


def test_the_task_comes_from_the_model_and_a_wrong_one_is_refused(run, tagger, capsys):
    classifier = run.out / "joint"
    status, out, _ = run_cli(["predict", "--model", tagger, "w1 w2 w3"], capsys)
    assert status == 0 and out.strip().startswith("w1")  # tags of words, the tagger's own task
    for model, task in [(classifier, "token-classification"), (tagger, "classification"),
                        (classifier, "question-answering")]:
        argv = ["predict", "--model", model, "--task", task, "w1 w2"]
        if task == "question-answering":
            argv = ["predict", "--model", model, "--task", task, "--question", "w1", "--context", "w2 w3"]
        status, out, err = run_cli(argv, capsys)
        own = "classification" if model == classifier else "token-classification"
        assert status == 2 and out == "" and err.count("\n") == 1, err
        assert f"is a {own} model" in err and f"use it with --task {own}" in err


def test_a_model_saved_without_its_tokenizer_gets_a_clear_error(tmp_path, capsys):
    trbert.TRBertForSequenceClassification(tiny_config(num_labels=2)).save_pretrained(tmp_path)
    status, _, err = run_cli(["predict", "--model", tmp_path, "w1 w2"], capsys)
    assert status == 2 and "has no tokenizer" in err and "tokenizer.save_pretrained" in err and err.count("\n") == 1


def test_blank_lines_in_a_file_are_skipped_with_a_notice(run, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("w1 red w2\n\n   \nw3 w4\n")
    status, out, err = run_cli(["predict", "--model", run.out / "joint", "--file", texts, "--json"], capsys)
    assert status == 0 and [json.loads(line)["tokens"] for line in out.splitlines()] == [5, 4]
    assert "skipped 2 blank line(s)" in err


@pytest.mark.parametrize("text", ["\x00\x00", "\u200b \u200b", "caf\udce9"])
def test_texts_with_nothing_to_read_or_not_utf8_are_refused(run, text, capsys):
    status, out, err = run_cli(["predict", "--model", run.out / "joint", "w1 w2", text], capsys)
    assert status == 2 and out == "" and "text argument 2" in err and err.count("\n") == 1


def test_bytes_that_are_not_utf8_on_standard_input_get_one_line(run):
    result = subprocess.run([sys.executable, "-m", "trbert", "predict", "--threads", "1", "--model",
                             str(run.out / "joint"), "--file", "-"], input=b"caf\xe9 \xff\n", capture_output=True,
                            timeout=300)
    assert result.returncode == 2 and result.stdout == b""
    assert result.stderr.decode().splitlines()[-1] == ("trbert predict: error: standard input is not valid UTF-8 "
                                                       "text (byte 0xe9 at offset 3)")
    assert "Traceback" not in result.stderr.decode()


@pytest.mark.parametrize("damage", ["keep_threshold", "reduction_layers", "weights"])
def test_a_damaged_model_folder_gets_one_line(run, tmp_path, damage, capsys):
    source = run.out / ("finetune" if damage == "weights" else "joint")
    folder = tmp_path / "model"
    shutil.copytree(source, folder)
    if damage == "weights":  # a plain BERT folder whose weights were cut off mid-write
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        config = json.loads((folder / "config.json").read_text())
        config[damage] = 2 if damage == "keep_threshold" else [99]
        (folder / "config.json").write_text(json.dumps(config))
    status, _, err = run_cli(["predict", "--model", folder, "w1 w2"], capsys)
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert {"keep_threshold": "keep_threshold=2 must lie in [0, 1]", "reduction_layers": "reduction_layers=[99]",
            "weights": "may be missing, corrupt or half-written"}[damage] in err
