"""Fixed keep fractions: each step keeps a set share of each example's tokens, whatever else is in the batch."""

import pytest
import torch
from builders import LENGTHS, decisions, reducing_model, tiny_batch

import trbert


def test_fixed_fraction_strategy_keeps_leading_tokens():
    model = reducing_model(trbert.TRBertForSequenceClassification)
    model.set_strategy(trbert.FixedFractionStrategy([0.5, 0.25]))
    ids, mask = tiny_batch([20, 8])
    out = model(input_ids=ids, attention_mask=mask)
    assert out.kept_lengths.tolist() == [[10, 5], [4, 2]]
    actions = decisions(model, ids, mask)
    assert actions[1][0].nonzero().flatten().tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("order", ["first", "random"])
def test_fixed_fraction_strategy_is_batch_invariant(order):
    model = reducing_model(trbert.TRBertForSequenceClassification)
    model.set_strategy(trbert.FixedFractionStrategy([0.5, 0.25], order=order, seed=4))
    ids, mask = tiny_batch(LENGTHS)
    with torch.no_grad():
        batch = model(input_ids=ids, attention_mask=mask)
        for b, length in enumerate(LENGTHS):
            alone = model(input_ids=ids[b : b + 1, :length])
            torch.testing.assert_close(alone.logits[0], batch.logits[b], atol=1e-5, rtol=0)
