"""The pipelines: text and token classification with trbert models, and trbert's extractive question answering."""

import pytest
from builders import spread_policy, tiny_config
from transformers import (
    pipeline,
)

import trbert


def test_question_answering_pipeline_rejects_empty_context(tokenizer):
    from transformers import pipeline

    model = trbert.TRBertForQuestionAnswering(tiny_config(num_labels=2)).eval()
    qa = pipeline("question-answering", model=model, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="the context is empty"):
        qa(question="w1", context="  ")


def test_text_classification_pipeline(tokenizer, tmp_path):
    model = spread_policy(trbert.TRBertForSequenceClassification(tiny_config(num_labels=3)).eval())
    model.config.id2label = {0: "a", 1: "b", 2: "c"}
    model.config.label2id = {"a": 0, "b": 1, "c": 2}
    model.save_pretrained(tmp_path / "m")
    clf = pipeline("text-classification", model=str(tmp_path / "m"), tokenizer=tokenizer)
    out = clf(["w1 w2 w3 w4 w5", "w9 " * 30])
    assert [o["label"] in "abc" for o in out] == [True, True]
    enc = tokenizer(["w1 w2 w3 w4 w5"], return_tensors="pt")
    probs = model(**enc).logits.softmax(-1)[0]
    assert out[0]["score"] == pytest.approx(probs.max().item(), abs=1e-5)


def test_token_classification_pipeline(tokenizer):
    model = spread_policy(trbert.TRBertForTokenClassification(tiny_config(num_labels=3)).eval())
    model.config.id2label = {0: "O", 1: "B-X", 2: "I-X"}
    ner = pipeline("token-classification", model=model, tokenizer=tokenizer)
    out = ner("w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12")
    assert isinstance(out, list)
    assert all(o["entity"] in ("B-X", "I-X") and o["word"].startswith("w") for o in out)


def test_question_answering_pipeline(tokenizer):
    model = spread_policy(trbert.TRBertForQuestionAnswering(tiny_config(num_labels=2)).eval())
    qa = pipeline("question-answering", model=model, tokenizer=tokenizer)
    context = "w10 w11 w12 w13 w14 w15 w16 w17 w18 w19 w20"
    out = qa(question="w1 w2", context=context)
    assert set(out) >= {"answer", "start", "end", "score"}
    assert out["answer"] == context[out["start"] : out["end"]] and out["answer"]


def test_question_answering_pipeline_windows_over_long_context(tokenizer):
    model = spread_policy(trbert.TRBertForQuestionAnswering(tiny_config(num_labels=2)).eval())
    qa = pipeline("question-answering", model=model, tokenizer=tokenizer)
    context = " ".join(f"w{i % 90}" for i in range(150))  # far beyond one 40-token window
    answers = qa(question="w1 w2", context=context, max_seq_len=40, doc_stride=10, top_k=3)
    assert len(answers) == 3 and answers[0]["score"] >= answers[1]["score"] >= answers[2]["score"]
    assert all(a["answer"] == context[a["start"] : a["end"]] for a in answers)
    assert max(a["end"] for a in answers) > 0
