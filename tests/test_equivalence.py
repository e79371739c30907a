"""With every token kept, each head equals the plain transformers model with the same weights."""

import pytest
import torch
from builders import TINY, tiny_batch
from transformers import (
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
