"""The corpus of bad inputs (bad_inputs.json) replayed through the Python API, the pipelines and the command
line: every case gets a clear error (the library's own exception types, exit status 2 and one line from the
command line), never a traceback and never an answer."""

import json
import re
import shutil
from pathlib import Path

import pytest
from builders import run_cli, tiny_config, tiny_tokenizer
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoModelForSequenceClassification, pipeline

import trbert
from trbert.data import load_text_files
from trbert.errors import CheckpointError, DataError

CORPUS = json.loads((Path(__file__).parent / "bad_inputs.json").read_text(encoding="utf-8"))
CONFIG_ERRORS = (ValueError, TypeError, StrictDataclassError)


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """A tiny TR classifier saved with its tokenizer."""
    folder = tmp_path_factory.mktemp("model")
    trbert.TRBertForSequenceClassification(tiny_config(num_labels=2)).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


def assert_one_line_error(status: int, out: str, err: str, command: str) -> None:
    assert status == 2 and out == "", (status, out, err)
    assert err.startswith(f"trbert {command}: error: ") and err.count("\n") == 1 and "Traceback" not in err, err


# ---------------------------------------------------------------------------- texts
@pytest.mark.parametrize("text", CORPUS["texts"])
def test_texts_with_nothing_to_read(text, tokenizer, model_folder, capsys):
    for texts in (text, ["w1 w2", text]):
        with pytest.raises(ValueError, match="nothing to read"):
            trbert.encode(tokenizer, texts)
    classify = pipeline("text-classification", model=trbert.TRBertForSequenceClassification(tiny_config(num_labels=2)),
                        tokenizer=tokenizer)
    for texts, where in ((text, "inputs"), (["w1 w2", text], "inputs[1]")):  # checked before tokenizing
        with pytest.raises(ValueError, match=rf"{re.escape(where)} .*nothing to read"):
            classify(texts)
    qa = pipeline("question-answering", model=trbert.TRBertForQuestionAnswering(tiny_config()), tokenizer=tokenizer)
    for question, context in ((text, "w1 w2"), ("w1", text)):
        with pytest.raises(ValueError, match="nothing|empty"):
            qa(question=question, context=context)
    assert_one_line_error(*run_cli(["predict", "--model", model_folder, "w1", text], capsys), "predict")


@pytest.mark.parametrize("value", CORPUS["text_values"], ids=repr)
def test_values_that_are_not_texts(value, tokenizer):
    with pytest.raises((TypeError, ValueError), match="texts"):
        trbert.encode(tokenizer, value)
    classify = pipeline("text-classification", model=trbert.TRBertForSequenceClassification(tiny_config(num_labels=2)),
                        tokenizer=tokenizer)
    if value == []:
        assert classify(value) == []  # an empty batch: no answers
    elif isinstance(value, dict):
        assert classify(value)["label"]  # a text (pair) in transformers' dict form is a text
    else:
        with pytest.raises(TypeError, match=r"inputs(\[1\])? (is of type|must be a string)"):
            classify(value)


# ---------------------------------------------------------------------------- files
def write(folder: Path, name: str, content: str) -> Path:
    path = folder / name
    if content.startswith("hex:"):
        path.write_bytes(bytes.fromhex(content[4:]))
    else:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", list(CORPUS["files"]))
def test_training_files(name, tmp_path, backbone, capsys):
    path = write(tmp_path, name, CORPUS["files"][name])
    with pytest.raises(DataError, match=name):
        load_text_files(train=path)
    argv = ["train", "--stage", "finetune", "--out", tmp_path / "out", "--backbone", backbone, "--data", path,
            "--no-progress"]
    if name.endswith(".txt"):  # refused by the option's own check: argparse's usage line, then the error
        with pytest.raises(SystemExit) as exit_info:
            run_cli(argv, capsys)
        assert exit_info.value.code == 2
        assert "or a .csv / .jsonl / .json file, got" in capsys.readouterr().err
    else:
        status, out, err = run_cli(argv, capsys)
        assert_one_line_error(status, out, err, "train")
        assert name in err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- configuration values
@pytest.mark.parametrize("values", CORPUS["config_values"], ids=lambda v: json.dumps(v))
def test_configuration_values(values, model_folder, tmp_path, capsys):
    with pytest.raises(CONFIG_ERRORS) as error:
        tiny_config(**values)
    assert any(name in str(error.value) for name in values), error.value
    folder = tmp_path / "model"
    shutil.copytree(model_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **values}))
    with pytest.raises(CONFIG_ERRORS + (CheckpointError,)):
        AutoModelForSequenceClassification.from_pretrained(folder)
    assert_one_line_error(*run_cli(["predict", "--model", folder, "w1 w2"], capsys), "predict")


# ---------------------------------------------------------------------------- checkpoints
def damaged(kind: str, model_folder: Path, tmp_path: Path) -> Path:
    folder = tmp_path / kind
    if kind == "no_folder":
        return folder
    if kind == "empty_folder":
        folder.mkdir()
        return folder
    shutil.copytree(model_folder, folder)
    config, weights = folder / "config.json", folder / "model.safetensors"
    if kind == "no_weights":
        weights.unlink()
    elif kind == "truncated_weights":
        weights.write_bytes(weights.read_bytes()[:500])
    elif kind == "empty_config":
        config.write_text("")
    elif kind == "config_not_json":
        config.write_text("{model_type: trbert")
    elif kind == "config_a_list":
        config.write_text("[]")
    elif kind == "gpt2_model_type":
        config.write_text(json.dumps({**json.loads(config.read_text()), "model_type": "gpt2"}))
    elif kind == "no_tokenizer":
        for path in folder.iterdir():
            if "token" in path.name or path.name == "vocab.txt":
                path.unlink()
    return folder


@pytest.mark.parametrize("kind", CORPUS["checkpoints"])
def test_damaged_checkpoints(kind, model_folder, tmp_path, capsys):
    folder = damaged(kind, model_folder, tmp_path)
    if kind != "no_tokenizer":  # the model itself loads; only the command line needs the tokenizer
        with pytest.raises(CheckpointError):
            trbert.TRBertForSequenceClassification.from_pretrained(folder)
    assert_one_line_error(*run_cli(["predict", "--model", folder, "w1 w2"], capsys), "predict")
