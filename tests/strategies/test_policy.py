"""The learned policy: its keep probabilities, the threshold and expected keep rules, and what it costs."""

import torch
from builders import LENGTHS, reducing_model, tiny_batch

import trbert


def test_policy_skips_some_tokens_and_keeps_others():
    model = reducing_model()
    ids, mask = tiny_batch(LENGTHS)
    with torch.no_grad():
        kept = model(input_ids=ids, attention_mask=mask).kept_lengths
    lengths = mask.sum(1)
    assert (kept[:, 0] <= lengths).all() and (kept[:, 1] <= kept[:, 0]).all()  # nested steps
    assert (kept[:, -1] < lengths).any() and (kept[:, -1] > 1).any()


def test_expected_keep_rule_keeps_round_sum_of_probabilities():
    model = reducing_model(trbert.TRBertForSequenceClassification, reduction_layers=[1], keep_rule="expected")
    ids, mask = tiny_batch(LENGTHS)
    encoder = model.bert.encoder
    seen = {}
    original = encoder._select

    def spy(step, tokens, input_ids, action, sample):
        keep, *rest = original(step, tokens, input_ids, action, sample)
        p = encoder.policy[step](tokens.hidden)
        seen["expected"] = torch.zeros(len(LENGTHS)).index_add(0, tokens.example, p)
        seen["keep"], seen["p"], seen["example"] = keep, p, tokens.example
        return (keep, *rest)

    encoder._select = spy
    with torch.no_grad():
        kept = model(input_ids=ids, attention_mask=mask).kept_lengths[:, 0]
    assert kept.tolist() == torch.clamp(torch.round(seen["expected"]), min=1).long().tolist()
    for b in range(len(LENGTHS)):  # the most probable tokens ([CLS] aside) are the ones kept
        mine = seen["example"] == b
        p, keep = seen["p"][mine][1:], seen["keep"][mine][1:]
        if keep.any() and (~keep).any():
            assert p[keep].min() >= p[~keep].max()
    model.config.keep_rule = "threshold"
    with torch.no_grad():
        assert model(input_ids=ids, attention_mask=mask).kept_lengths[:, 0].tolist() != kept.tolist()
