"""`trbert predict`: a table or JSON Lines of labels, probabilities and kept tokens; clear messages for bad texts."""

import json

import pytest
from builders import LABELS, run_cli


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
