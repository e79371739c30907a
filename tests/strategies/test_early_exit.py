"""Token-level early exit: window decisions on hand-made uncertainties, skipped tokens as keys and
values (removal equals masking), cost accounting, batch invariance, and the full model at threshold 0."""

import math

import pytest
import torch
from builders import LENGTHS, decisions, tiny_batch, tiny_config
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertForTokenClassification

import trbert
from trbert.strategies import Tokens
from trbert.strategies.early_exit import window_max


def early_exit(threshold=0.6, seed=3, **overrides):
    torch.manual_seed(seed)
    model = trbert.TRBertForTokenClassification(tiny_config(num_labels=3, selection="early_exit",
                                                            exit_threshold=threshold, **overrides)).eval()
    with torch.no_grad():  # sharper internal classifiers, so that uncertainties spread over [0, 1]
        for head in model.bert.encoder.exits:
            head.weight.mul_(40)
    return model


def tokens_of(uncertainty_rows):
    """Tokens of examples whose present positions are the non-None entries of each row."""
    example, position, values = [], [], []
    for b, row in enumerate(uncertainty_rows):
        for p, u in enumerate(row):
            if u is not None:
                example.append(b)
                position.append(p)
                values.append(u)
    example, position = torch.tensor(example), torch.tensor(position)
    present = torch.bincount(example, minlength=len(uncertainty_rows))
    tokens = Tokens(torch.zeros(len(example), 4), example, position, torch.zeros_like(example), present, present)
    return tokens, torch.tensor(values)


def test_window_max_over_neighbours_of_the_same_example():
    tokens, u = tokens_of([[0.1, 0.0, 0.9, 0.0, 0.0, 0.2], [0.5, None, 0.0, 0.0]])
    assert window_max(u, tokens, 1).tolist() == pytest.approx([0.1, 0.9, 0.9, 0.9, 0.2, 0.2, 0.5, 0.0, 0.0])
    assert window_max(u, tokens, 0).tolist() == u.tolist()
    # Window 2: the 0.9 reaches two positions each side, never into the other example.
    assert window_max(u, tokens, 2).tolist() == pytest.approx([0.9, 0.9, 0.9, 0.9, 0.9, 0.2, 0.5, 0.5, 0.0])


def test_strategy_keeps_tokens_whose_window_is_uncertain():
    class Fixed(torch.nn.Module):  # logits that give chosen uncertainties: certain (one-hot-ish) or uniform
        def __init__(self, uniform):
            super().__init__()
            self.uniform = uniform

        def forward(self, hidden):
            logits = torch.tensor([[30.0, 0.0, 0.0]]).repeat(len(hidden), 1)
            logits[self.uniform] = 0.0
            return logits

    tokens, _ = tokens_of([[0] * 8])
    config = tiny_config(num_labels=3, selection="early_exit", exit_threshold=0.5, exit_window=1)
    proposal = trbert.EarlyExitStrategy().propose(0, tokens, Fixed(torch.tensor([4])), config)
    assert proposal.keep.tolist() == [False, False, False, True, True, True, False, False]
    assert proposal.score[4].item() == pytest.approx(1.0) and proposal.score[0].item() < 1e-6
    config.exit_window = 0
    assert trbert.EarlyExitStrategy().propose(0, tokens, Fixed(torch.tensor([4])), config).keep.sum() == 1


def test_threshold_zero_keeps_every_token_and_equals_the_plain_model():
    plain = BertForTokenClassification(tiny_config(num_labels=3)).eval()
    model = early_exit(threshold=0.0)
    missing = model.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert all(".exits." in k for k in missing)
    assert model.config.reduction_layers == [1, 2, 3]
    ids, mask = tiny_batch(LENGTHS)
    with torch.no_grad():
        a, b = model(input_ids=ids, attention_mask=mask), plain(input_ids=ids, attention_mask=mask)
    assert a.kept_lengths.tolist() == [[n] * 3 for n in LENGTHS]
    torch.testing.assert_close(a.logits[mask.bool()], b.logits[mask.bool()], atol=1e-5, rtol=0)


@pytest.mark.parametrize("as_keys", [False, True])
def test_tokens_leave_and_keep_their_last_state(as_keys):
    model = early_exit(skipped_as_keys=as_keys)
    ids, mask = tiny_batch(LENGTHS)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
    lengths = mask.sum(1)
    assert (out.kept_lengths[:, -1] < lengths).any() and (out.kept_lengths[:, 0] > 1).any()
    assert (out.kept_lengths[:, 1:] <= out.kept_lengths[:, :-1]).all()
    # Batch invariance: each example alone gives the same decisions and labels.
    for b, n in enumerate(LENGTHS):
        with torch.no_grad():
            alone = model(input_ids=ids[b:b + 1, :n])
        assert alone.kept_lengths.tolist() == out.kept_lengths[b:b + 1].tolist()
        torch.testing.assert_close(alone.logits[0], out.logits[b, :n], atol=1e-5, rtol=0)


@pytest.mark.parametrize("masked", [False, True])
def test_a_token_that_left_is_labelled_by_the_classifier_where_it_left(masked):
    model = early_exit()
    ids, mask = tiny_batch(LENGTHS)
    actions = decisions(model, ids, mask)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, keep_actions=actions, masked=masked)
        states = model.bert(input_ids=ids, attention_mask=mask, keep_actions=actions, masked=True,
                            step_states=True).step_states
        final = model.classifier(model.bert(input_ids=ids, attention_mask=mask, keep_actions=actions,
                                            masked=True).last_hidden_state)
    present = mask.bool()
    checked = 0
    for step, head in enumerate(model.bert.encoder.exits):
        leaving = present & ~actions[step]  # present before the step, gone after it
        with torch.no_grad():
            torch.testing.assert_close(out.logits[leaving], head(states[step])[leaving], atol=1e-5, rtol=0)
        checked += int(leaving.sum())
        present = present & actions[step]
    assert checked > 0 and present.any()
    torch.testing.assert_close(out.logits[present], final[present], atol=1e-5, rtol=0)  # went through: final head


def test_skipped_tokens_as_keys_removal_equals_masking_and_changes_the_result():
    ids, mask = tiny_batch(LENGTHS)
    model = early_exit(skipped_as_keys=True)
    actions = decisions(model, ids, mask)
    with torch.no_grad():
        removed = model(input_ids=ids, attention_mask=mask, keep_actions=actions)
        masked = model(input_ids=ids, attention_mask=mask, keep_actions=actions, masked=True)
        model.config.skipped_as_keys = False
        without = model(input_ids=ids, attention_mask=mask, keep_actions=actions)
    real = mask.bool()
    torch.testing.assert_close(removed.logits[real], masked.logits[real], atol=1e-5, rtol=0)
    assert not torch.allclose(removed.logits[real], without.logits[real], atol=1e-4)


@pytest.mark.parametrize("as_keys", [False, True])
def test_cost_matches_flop_counter(as_keys):
    model = early_exit(skipped_as_keys=as_keys, hidden_size=64, intermediate_size=128, max_position_embeddings=128)
    model.config._attn_implementation = "eager"
    ids, mask = tiny_batch([40, 17, 29])
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = model.bert(input_ids=ids, attention_mask=mask, restore=False)
    assert (out.kept_lengths[:, -1] < mask.sum(1)).all()
    cost = trbert.reduction_cost(model.config, mask.sum(1), out.kept_lengths)
    assert cost.macs.sum().item() == pytest.approx(counter.get_total_flops() / 2, rel=0.01)


def test_exit_logits_for_training_and_errors():
    model = early_exit()
    ids, mask = tiny_batch(LENGTHS)
    out = model(input_ids=ids, attention_mask=mask, masked=True, exit_logits=True)
    assert len(out.exit_logits) == 3 and out.exit_logits[0].shape == (*ids.shape, 3)
    with pytest.raises(ValueError, match="masked mode"):
        model(input_ids=ids, attention_mask=mask, masked=False, exit_logits=True)
    with pytest.raises(ValueError, match="selection='early_exit'"):
        trbert.TRBertForTokenClassification(tiny_config(num_labels=3))(input_ids=ids, exit_logits=True)
    for bad in (dict(selection="exit"), dict(exit_threshold=1.5), dict(exit_window=-1)):
        with pytest.raises(Exception, match=next(iter(bad))):
            tiny_config(num_labels=3, **bad)
    assert math.isclose(model.config.exit_threshold, 0.6)
