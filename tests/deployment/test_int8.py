"""PyTorch int8: the policies stay fp32, outputs and kept tokens stay close to fp32, the input model is left alone."""


import pytest
import torch
from builders import center_policies, keep_decisions, plain_classifier, relative_error, spread_policy, tiny_batch, tiny_config
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

import trbert
from trbert.deployment import quantize_int8


# ---------------------------------------------------------------------------- PyTorch int8
def test_quantize_int8_keeps_policies_fp32_and_leaves_the_input_alone():
    model = spread_policy(trbert.TRBertForSequenceClassification(tiny_config(num_labels=3)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = quantize_int8(model)  # model is in training mode: the copy must come back in eval mode
    assert q is not model and not q.training and model.training
    for original, policy in zip(model.bert.encoder.policy, q.bert.encoder.policy):
        for name in ("dense", "out"):
            layer = getattr(policy, name)
            assert type(layer) is nn.Linear and layer.weight.dtype == torch.float32
            assert torch.equal(layer.weight, getattr(original, name).weight)
    for layer in q.bert.encoder.layer:
        linears = [layer.attention.self.query, layer.attention.self.key, layer.attention.self.value,
                   layer.attention.output.dense, layer.intermediate.dense, layer.output.dense]
        assert all(isinstance(m, DynamicLinear) and m.weight().dtype == torch.qint8 for m in linears)
    assert isinstance(q.classifier, DynamicLinear) and isinstance(q.bert.pooler.dense, DynamicLinear)
    # The input: still fp32 everywhere, the same weights.
    assert not any(isinstance(m, DynamicLinear) for m in model.modules())
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_int8_linear_layers_compute_8_bit_activations_per_token_times_7_bit_weights():
    """What ONNX Runtime's int8 computes too: each token quantized on 8 bits over [-m, m], m its largest
    magnitude, weights on 7 bits with one scale per output row, the product in integers, the bias added in fp32."""
    torch.manual_seed(0)
    linear = nn.Linear(64, 32)
    q = quantize_int8(nn.Sequential(linear))[0]
    codes = q.weight().int_repr()
    assert codes.min() >= -64 and codes.max() <= 64 and (q.weight().q_per_channel_zero_points() == 0).all()
    assert torch.equal(q.bias(), linear.bias)
    x = torch.randn(10, 64) * torch.logspace(-2, 2, 10)[:, None] + 0.5  # tokens of very different magnitudes
    m = x.abs().amax(1, keepdim=True)
    scale = torch.tensor(2 / 255)  # in fp32, a hair above 2/255: +-1 round to codes 128 +- 127
    dequantized = (torch.clamp(torch.round(x / m / scale) + 128, 0, 255) - 128) * scale * m
    want = dequantized @ q.weight().dequantize().T + linear.bias.detach()
    with torch.inference_mode():
        got = q(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert (got - linear(x).detach()).abs().max() > 1e-3  # and not the fp32 product


def test_int8_linear_rounds_each_token_on_its_own():
    """A token's output does not depend on the other tokens of the call (so neither on its batch), an
    all-zero token gives the bias, and any leading shape works."""
    torch.manual_seed(0)
    linear = nn.Linear(48, 16)
    q = quantize_int8(nn.Sequential(linear))[0]
    x = torch.randn(3, 7, 48) * torch.logspace(-3, 3, 7)[:, None]
    x[1, 2] = 0
    with torch.inference_mode():
        together = q(x)
        alone = torch.stack([torch.stack([q(token[None])[0] for token in row]) for row in x])
    assert together.shape == (3, 7, 16)
    assert torch.equal(together, alone)
    assert torch.equal(together[1, 2], linear.bias.detach())


def test_int8_linear_does_not_saturate():
    """Weights at their extremes and activations at both ends of their range: with 8-bit weights pairs of
    products would pass 16 bits, which CPUs without VNNI saturate; 7-bit weights keep every pair inside."""
    torch.manual_seed(0)
    linear = nn.Linear(256, 16)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(16, 256).sign())
    x = 3 * linear.weight[:1].detach().sign().repeat(4, 1)  # row 0 sums 256 products of the same sign
    x[:, ::2] = 3.0
    q = quantize_int8(nn.Sequential(linear))
    with torch.inference_mode():
        want, got = linear(x), q(x)
    # Saturated pair sums would take about half of row 0's value away; rounding alone stays under 1%.
    assert (got - want).abs().max() < 0.01 * want.abs().max()


def test_quantized_trbert_runs_with_per_example_lengths_close_to_fp32():
    model = spread_policy(trbert.TRBertForSequenceClassification(tiny_config(num_labels=3)).eval())
    q = quantize_int8(model)
    ids, mask = tiny_batch([20, 13, 7, 30])
    with torch.no_grad():
        full, small = model(input_ids=ids, attention_mask=mask), q(input_ids=ids, attention_mask=mask)
        states = model.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        q_states = q.bert(input_ids=ids, attention_mask=mask).last_hidden_state
    lengths = mask.sum(1)
    assert (full.kept_lengths[:, -1] < lengths).all() and (full.kept_lengths[:, -1] > 1).all()  # reduction at work
    assert torch.equal(small.kept_lengths, full.kept_lengths)  # the fp32 policies see nearly the same states
    real = mask.bool()
    # Measured over 10 random models: max |state difference| <= 1.6e-3, logits relative error 1.4-3.4%
    # (the random head's logits are about 0.01, so int8 noise is large relative to them).
    assert (q_states[real] - states[real]).abs().max() < 5e-3
    assert 0 < relative_error(small.logits, full.logits) < 0.1


def test_int8_stacked_query_key_value_gives_the_three_projections_outputs():
    model = spread_policy(trbert.TRBertForSequenceClassification(tiny_config(num_labels=3)).eval())
    q = quantize_int8(model)
    ids, mask = tiny_batch([20, 13, 7, 30])
    encoder = q.bert.encoder
    assert model.bert.encoder.qkv is None  # the input model is not changed
    for layer, qkv in zip(encoder.layer, encoder.qkv, strict=True):
        sa = layer.attention.self
        assert isinstance(qkv, DynamicLinear) and qkv.weight().shape == (3 * sa.all_head_size, sa.all_head_size)
    with torch.no_grad():
        fused = q(input_ids=ids, attention_mask=mask)
        encoder.qkv = None  # back to the three projections
        separate = q(input_ids=ids, attention_mask=mask)
    assert torch.equal(fused.kept_lengths, separate.kept_lengths)
    # Same int8 weights and input scale, so the same products; only float rounding may differ.
    torch.testing.assert_close(fused.logits, separate.logits, atol=1e-6, rtol=1e-5)


def test_quantize_int8_plain_transformers_model():
    model = plain_classifier()
    q = quantize_int8(model)
    assert sum(isinstance(m, DynamicLinear) for m in q.modules()) == 4 * 6 + 2  # every layer, pooler, classifier
    ids, mask = tiny_batch([20, 13, 7, 30])
    with torch.no_grad():
        expected, got = model(input_ids=ids, attention_mask=mask).logits, q(input_ids=ids, attention_mask=mask).logits
    assert 0 < relative_error(got, expected) < 0.1  # measured 0.9-6.4% over 5 random models


def test_quantize_int8_refuses_a_model_off_the_cpu():
    model = trbert.TRBertForSequenceClassification(tiny_config(num_labels=3)).to("meta")
    with pytest.raises(ValueError, match=r"CPU.*model\.cpu\(\)"):
        quantize_int8(model)












# ---------------------------------------------------------------------------- the real MiniLM


def test_int8_minilm_keeps_nearly_the_same_tokens(minilm):
    path, batch = minilm
    model = trbert.TRBertForSequenceClassification.from_pretrained(
        path, num_labels=5, keep_threshold=0.5, reduction_layers=[1, 3]
    ).eval()
    center_policies(model, batch)
    q = quantize_int8(model)
    full, full_keep = keep_decisions(model, **batch)
    small, small_keep = keep_decisions(q, **batch)
    tokens = int(batch["attention_mask"].sum())  # 401
    kept = int(full.kept_lengths.sum())
    assert 0.6 * tokens < kept < 0.9 * tokens  # about half kept at each of the two steps

    # Knife-edge random policies. Bounds set over 10 of them with torch's default int8 (8-bit weights, 7-bit
    # activations): it changed 3.6-8.6% of the kept counts and flipped 3.7-6.5% of the first step's decisions.
    assert int((small.kept_lengths - full.kept_lengths).abs().sum()) <= 0.10 * kept
    assert int((small_keep[0] ^ full_keep[0]).sum()) <= 0.08 * tokens

    with torch.no_grad():
        cls = model.bert(**batch, restore=False).last_hidden_state[:, 0]
        q_cls = q.bert(**batch, restore=False).last_hidden_state[:, 0]
        replayed = q.bert(**batch, restore=False, keep_actions=full_keep).last_hidden_state[:, 0]
    # The same decisions: int8 noise alone; MiniLM's FFN activations have outliers (up to 170x their mean),
    # so even without token reduction int8 reached 0.984-0.989, min 0.979 over 10 policies (torch's default int8).
    assert torch.cosine_similarity(replayed, cls).min() > 0.97
    # Its own decisions: flipped tokens change what [CLS] attends to (mean 0.889-0.973 with torch's default int8).
    assert torch.cosine_similarity(q_cls, cls).mean() > 0.85


