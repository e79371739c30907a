"""Cost accounting against torch's FLOP counter (eager attention, where the counter sees every matmul)."""

import pytest
import torch
from builders import spread_policy, tiny_batch, tiny_config
from torch.utils.flop_counter import FlopCounterMode

import trbert


def counted_macs(model, **inputs) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = model(**inputs)
    return counter.get_total_flops() / 2, out


@pytest.mark.parametrize("lengths", [[40], [40, 17, 29]])
@pytest.mark.parametrize("strategy", [trbert.PolicyStrategy(), trbert.FixedFractionStrategy([0.5, 0.25])])
def test_cost_matches_flop_counter(lengths, strategy):
    config = tiny_config(hidden_size=64, intermediate_size=128, max_position_embeddings=128)
    config._attn_implementation = "eager"
    model = spread_policy(trbert.TRBertModel(config, add_pooling_layer=False).eval())
    model.set_strategy(strategy)
    ids, mask = tiny_batch(lengths)
    counted, out = counted_macs(model, input_ids=ids, attention_mask=mask, restore=False)
    assert (out.kept_lengths[:, -1] < mask.sum(1)).all()  # tokens were removed
    cost = trbert.reduction_cost(config, mask.sum(1), out.kept_lengths, strategy=strategy)
    assert cost.macs.sum().item() == pytest.approx(counted, rel=0.01)
    assert (cost.speedup > 1).all()


def test_full_cost_matches_flop_counter_and_formula():
    config = tiny_config(keep_threshold=0.0)
    config._attn_implementation = "eager"
    model = trbert.TRBertModel(config, add_pooling_layer=False).eval()
    ids, mask = tiny_batch([50])
    counted, out = counted_macs(model, input_ids=ids, attention_mask=mask)
    cost = trbert.reduction_cost(config, mask.sum(1), out.kept_lengths)
    full = trbert.reduction_cost(config, mask.sum(1), None)
    n, d, f, L = 50, 32, 37, 4
    assert full.macs.item() == L * (4 * n * d * d + 2 * n * d * f + 2 * n * n * d)
    assert cost.macs.item() == pytest.approx(counted, rel=0.01)
    assert cost.macs.item() > full.macs.item()  # keeping all tokens costs the policies on top
    policies = trbert.PolicyStrategy.selection_macs(config, torch.tensor([50, 50])).sum()  # both steps see all 50 tokens
    assert cost.speedup.item() == pytest.approx((full.macs / (full.macs + policies)).item())


def test_ideal_speedup_of_known_keep_fractions():
    config = tiny_config(num_hidden_layers=6, reduction_layers=[1, 3])
    lengths = torch.tensor([400])
    cost = trbert.reduction_cost(config, lengths, torch.tensor([[200, 100]]), strategy=False)
    per_layer = trbert.cost.tokens_per_layer(config, lengths, torch.tensor([[200, 100]]))
    assert per_layer.tolist() == [[400, 200, 200, 100, 100, 100]]
    expected = 6 * trbert.cost.layer_macs(config, torch.tensor(400.0)) / sum(
        trbert.cost.layer_macs(config, torch.tensor(float(t))) for t in per_layer[0])
    assert cost.speedup.item() == pytest.approx(expected.item())
