"""Bad input gets a clear error naming the problem, never a crash deep inside torch."""

import pytest
import torch
from builders import tiny_batch, tiny_config, tiny_tokenizer

import trbert


@pytest.fixture
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture
def model():
    return trbert.TRBertForSequenceClassification(tiny_config(num_labels=2)).eval()


@pytest.mark.parametrize("texts,error,match", [
    ("", ValueError, r"texts\[0\] is empty"),
    (["w1 w2", "   \n\t"], ValueError, r"texts\[1\] is empty or only whitespace"),
    ([], ValueError, "texts is empty"),
    (["w1", 3], TypeError, r"texts\[1\] is a int"),
    (42, TypeError, "must be a string or a list of strings"),
    (None, TypeError, "must be a string or a list of strings"),
])
def test_bad_texts(tokenizer, texts, error, match):
    with pytest.raises(error, match=match):
        trbert.encode(tokenizer, texts)


def test_long_text_is_truncated_by_default_and_rejected_without_truncation(tokenizer, model):
    long_text = " ".join(["w5"] * 200)
    enc = trbert.encode(tokenizer, [long_text, "w1 w2"])
    assert enc["input_ids"].shape == (2, 64)
    assert model(**enc).logits.shape == (2, 2)
    with pytest.raises(ValueError, match="text 0 has 202 tokens but the model takes at most 64"):
        trbert.encode(tokenizer, long_text, truncation=False)


def test_model_rejects_inputs_it_cannot_take(model):
    ids, mask = tiny_batch([10, 6])
    with pytest.raises(TypeError, match="input_ids must be a torch.Tensor, got list"):
        model(input_ids=ids.tolist())
    with pytest.raises(TypeError, match="2-D integer tensor"):
        model(input_ids=ids.float())
    with pytest.raises(TypeError, match="2-D integer tensor"):
        model(input_ids=ids[0])
    with pytest.raises(ValueError, match="has 70 tokens but the model takes at most 64: tokenize with truncation"):
        model(input_ids=torch.full((1, 70), 7))
    with pytest.raises(ValueError, match=r"example\(s\) \[1\] have no tokens"):
        model(input_ids=ids, attention_mask=torch.stack([mask[0], torch.zeros_like(mask[1])]))
    with pytest.raises(ValueError, match="attention_mask must be a tensor of shape"):
        model(input_ids=ids, attention_mask=mask[:, :3])
    with pytest.raises(ValueError, match="is empty"):
        model(input_ids=torch.zeros(0, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="exactly one of input_ids or inputs_embeds"):
        model()
    with pytest.raises(ValueError, match="keep_actions has 1 entries but the model has 2"):
        model(input_ids=ids, keep_actions=[torch.ones_like(ids, dtype=torch.bool)])


@pytest.mark.parametrize("overrides,match", [
    (dict(reduction_layers=[1, 4]), r"every index must lie in \[0, 3\]"),
    (dict(reduction_layers=[-1]), r"every index must lie in \[0, 3\]"),
    (dict(reduction_layers=[2, 1]), "strictly increasing"),
    (dict(keep_threshold=1.5), r"keep_threshold=1.5 must lie in \[0, 1\]"),
    (dict(keep_threshold=-0.1), r"must lie in \[0, 1\]"),
    (dict(max_keep_ratio=0.0), r"max_keep_ratio=0.0 must lie in \(0, 1\]"),
    (dict(max_keep_ratio=1.2), r"must lie in \(0, 1\]"),
    (dict(policy_hidden_size=0), "policy_hidden_size=0 must be at least 1"),
    (dict(backbone="gpt2"), "backbone='gpt2' must be one of"),
    (dict(execution="nested"), "execution='nested' must be one of"),
    (dict(keep_rule="topk"), "keep_rule='topk' must be one of"),
])
def test_nonsensical_config(overrides, match):
    with pytest.raises(Exception, match=match):
        tiny_config(**overrides)


def test_strategy_misuse(model):
    with pytest.raises(ValueError, match=r"fractions=\[0.0\] must each lie in \(0, 1\]"):
        trbert.FixedFractionStrategy([0.0])
    model.set_strategy(trbert.FixedFractionStrategy([0.5]))
    ids, _ = tiny_batch([10])
    with pytest.raises(ValueError, match="has 1 fractions but step 1 was asked"):
        model(input_ids=ids)
    with pytest.raises(ValueError, match="no keep probabilities to sample from"):
        model(input_ids=ids, sample=True)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(trbert.CheckpointError, match="no checkpoint folder at"):
        trbert.TRBertForSequenceClassification.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(trbert.CheckpointError, match="no readable config.json"):
        trbert.TRBertForSequenceClassification.from_pretrained(tmp_path)  # exists but empty


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete"])
def test_corrupt_checkpoint(tmp_path, damage):
    trbert.TRBertForSequenceClassification(tiny_config(num_labels=2)).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "garbage":
        weights.write_bytes(b"\x00garbage" * 10)
    else:
        weights.unlink()
    with pytest.raises(trbert.CheckpointError, match="could not be loaded"):
        trbert.TRBertForSequenceClassification.from_pretrained(tmp_path)


def test_corrupt_config(tmp_path):
    trbert.TRBertForSequenceClassification(tiny_config(num_labels=2)).save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(trbert.CheckpointError, match="no readable config.json"):
        trbert.TRBertForSequenceClassification.from_pretrained(tmp_path)


def test_non_bert_checkpoint(tmp_path):
    from transformers import GPT2Config, GPT2Model

    GPT2Model(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).save_pretrained(tmp_path)
    with pytest.raises(trbert.CheckpointError, match="is a 'gpt2' model; trbert loads BERT-family"):
        trbert.TRBertModel.from_pretrained(tmp_path)


def test_question_answering_pipeline_rejects_empty_context(tokenizer):
    from transformers import pipeline

    model = trbert.TRBertForQuestionAnswering(tiny_config(num_labels=2)).eval()
    qa = pipeline("question-answering", model=model, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="the context is empty"):
        qa(question="w1", context="  ")
