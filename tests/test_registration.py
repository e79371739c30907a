"""Importing trbert loads nothing heavy, yet transformers learns trbert's classes: the Auto classes load its checkpoints and pipeline("question-answering") builds its extractive pipeline."""

import subprocess
import sys

import pytest

import trbert


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_import_and_help_load_nothing_heavy():
    heavy = "[m for m in ('torch', 'transformers.modeling_utils', 'datasets') if m in sys.modules]"
    assert run_python(f"import sys, trbert; print({heavy})") == "[]"
    code = ("import sys, contextlib, io\nfrom trbert.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        main(['train', '--help'])\n    except SystemExit:\n        pass\n"
            f"print({heavy})")
    assert run_python(code) == "[]"


ORDERS = {
    "trbert first": "import trbert\nimport transformers",
    "transformers first": "import transformers.pipelines\nimport trbert",
    # BERT's modules load transformers' Auto machinery in the middle of their own import
    "then BERT": "import trbert\nfrom transformers import BertConfig, BertForSequenceClassification",
}


@pytest.mark.parametrize("order", list(ORDERS))
def test_transformers_knows_trbert_after_import(tmp_path, order):
    """In a fresh process that only imports trbert, the Auto classes load a trbert checkpoint and
    `pipeline("question-answering")` builds trbert's extractive pipeline, whichever is imported first."""
    from builders import tiny_config, tiny_tokenizer

    trbert.TRBertForQuestionAnswering(tiny_config()).save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    code = f"""{ORDERS[order]}
from transformers import AutoModelForQuestionAnswering, pipeline
model = AutoModelForQuestionAnswering.from_pretrained({str(tmp_path)!r})
qa = pipeline("question-answering", model=model, tokenizer={str(tmp_path)!r})
answer = qa(question="w1 w2", context="w3 w4 w5 w6")
print(type(model).__name__, type(qa).__module__, sorted(answer))
"""
    assert run_python(code) == "TRBertForQuestionAnswering trbert.pipelines ['answer', 'end', 'score', 'start']"
