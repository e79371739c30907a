"""The prediction loop: outputs in order, independent of the batch size, with the cost accounting's multiply-adds."""

import pytest
import torch
from builders import (
    MAX_LENGTH,
    TEXTS,
    TINY,
    plain_twin,
    tr_classifier,
)

import trbert
from trbert.cost import layer_macs
from trbert.evaluation import (
    predict_batches,
)


# ---------------------------------------------------------------------------- predictions
def test_predictions_do_not_depend_on_the_batch_size(tokenizer):
    model = tr_classifier()
    one = predict_batches(model, tokenizer, TEXTS, MAX_LENGTH, batch_size=1, progress=False)
    four = predict_batches(model, tokenizer, TEXTS, MAX_LENGTH, batch_size=4, progress=False)
    assert one.logits.shape == (len(TEXTS), 3) and one.pred.dtype == torch.long
    assert torch.equal(one.pred, four.pred) and torch.equal(one.lengths, four.lengths)
    assert torch.equal(one.kept_lengths, four.kept_lengths)
    torch.testing.assert_close(one.logits, four.logits, atol=1e-5, rtol=0)
    assert torch.equal(one.macs, four.macs)
    assert one.lengths.tolist()[:2] == [5, 42] and one.lengths.max() == MAX_LENGTH
    assert (one.kept_lengths[:, -1] < one.lengths).any()  # the policy really reduces
    assert one.seconds > 0


def test_macs_are_those_of_the_cost_accounting(tokenizer):
    model = tr_classifier()
    p = predict_batches(model, tokenizer, TEXTS, MAX_LENGTH, batch_size=4, progress=False)
    expected = trbert.reduction_cost(model.config, p.lengths, p.kept_lengths, strategy=True)
    assert torch.equal(p.macs, expected.macs)

    model.set_strategy(trbert.FixedFractionStrategy([0.5, 0.25]))  # bypasses the policies: not counted
    p = predict_batches(model, tokenizer, TEXTS, MAX_LENGTH, batch_size=4, progress=False)
    assert torch.equal(p.macs, trbert.reduction_cost(model.config, p.lengths, p.kept_lengths, strategy=False).macs)

    plain = plain_twin(model)
    p = predict_batches(plain, tokenizer, TEXTS, MAX_LENGTH, batch_size=4, progress=False)
    assert p.kept_lengths is None
    assert torch.equal(p.macs, TINY["num_hidden_layers"] * layer_macs(plain.config, p.lengths))


def test_predicting_restores_the_training_mode(tokenizer):
    model = tr_classifier().train()
    predict_batches(model, tokenizer, TEXTS[:3], MAX_LENGTH, batch_size=2, progress=False)
    assert model.training


def test_predicting_reports_a_bad_text_by_its_index(tokenizer):
    with pytest.raises(ValueError, match=r"texts\[5\]"):
        predict_batches(tr_classifier(), tokenizer, [*TEXTS[:5], "  "], MAX_LENGTH, batch_size=2, progress=False)
