"""The three ways packed attention runs (one call per example, one padded call with a mask, one
variable-length FlashAttention call) give the same outputs, and a forward pass reads back to the host
once per reduction step, never per layer."""

import pytest
import torch
import torch.nn.functional as F
from builders import LENGTHS, reducing_model, spread_policy, tiny_batch, tiny_config

import trbert
from trbert import reduction


def reference_varlen(q, k, v, cu_seq_q, cu_seq_k, max_q, max_k):
    """What `torch.nn.attention.varlen.varlen_attn` computes, on the CPU: each sequence attends within itself."""
    assert cu_seq_q.dtype == cu_seq_k.dtype == torch.int32 and cu_seq_q.shape == cu_seq_k.shape
    spans_q, spans_k = cu_seq_q.tolist(), cu_seq_k.tolist()
    assert max_q == max(b - a for a, b in zip(spans_q, spans_q[1:]))
    assert max_k == max(b - a for a, b in zip(spans_k, spans_k[1:]))
    out = []
    for (q0, q1), (k0, k1) in zip(zip(spans_q, spans_q[1:]), zip(spans_k, spans_k[1:])):
        qe, ke, ve = (x.transpose(0, 1)[None] for x in (q[q0:q1], k[k0:k1], v[k0:k1]))  # [1, H, len, dh]
        out.append(F.scaled_dot_product_attention(qe, ke, ve)[0].transpose(0, 1))
    return torch.cat(out)


def run_path(monkeypatch, path, model, **inputs):
    monkeypatch.setattr(reduction, "attention_path", lambda device, dtype, dropout=0.0: path)
    if path == "varlen":
        monkeypatch.setattr(reduction, "_varlen_attn", reference_varlen)
    with torch.no_grad():
        return model(**inputs)


@pytest.mark.parametrize("path", ["padded", "varlen"])
@pytest.mark.parametrize("cls,overrides", [
    (trbert.TRBertForSequenceClassification, {}),
    (trbert.TRBertForTokenClassification, {}),  # restore
    (trbert.TRBertForSequenceClassification, {"skipped_as_keys": True}),  # other keys than queries
])
def test_every_attention_path_gives_the_per_example_outputs(path, cls, overrides, monkeypatch):
    model = reducing_model(cls, **overrides)
    ids, mask = tiny_batch(LENGTHS)
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask)
    got = run_path(monkeypatch, path, model, input_ids=ids, attention_mask=mask)
    assert got.kept_lengths.tolist() == want.kept_lengths.tolist()
    assert (want.kept_lengths[:, -1] < torch.tensor(LENGTHS)).any()  # tokens were removed
    torch.testing.assert_close(got.logits, want.logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("path", ["padded", "varlen"])
def test_long_inputs_attend_within_segments_on_every_path(path, monkeypatch):
    model = spread_policy(trbert.TRBertModel(tiny_config(long_input=True), add_pooling_layer=False).eval())
    ids, mask = tiny_batch([150, 70])
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask)
    got = run_path(monkeypatch, path, model, input_ids=ids, attention_mask=mask)
    assert got.kept_lengths.tolist() == want.kept_lengths.tolist()
    assert (want.kept_lengths[:, 0] < torch.tensor([150, 70])).all()  # tokens were removed
    torch.testing.assert_close(got.last_hidden_state, want.last_hidden_state, atol=1e-5, rtol=0)


def test_the_path_follows_the_device_and_precision():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert reduction.attention_path(cpu, torch.bfloat16) == "per_example"
    assert reduction.attention_path(cuda, torch.float32) == "padded"
    assert reduction.attention_path(cuda, torch.bfloat16, dropout=0.1) == "padded"
    expected = "varlen" if reduction._varlen_attn is not None else "padded"
    assert reduction.attention_path(cuda, torch.bfloat16) == reduction.attention_path(cuda, torch.float16) == expected


@pytest.mark.parametrize("cls", [trbert.TRBertForSequenceClassification, trbert.TRBertForTokenClassification])
def test_one_read_back_per_reduction_step(cls, monkeypatch):
    """Counted where Python reads a tensor's values: tolist, item, bool, int, float, nonzero. The forward
    pass: one for the input checks, one for the tokens of each example, one per reduction step."""
    model = reducing_model(cls)
    ids, mask = tiny_batch(LENGTHS)
    calls = []
    for name in ("tolist", "item", "__bool__", "__int__", "__float__", "__index__", "nonzero"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
    monkeypatch.undo()
    steps = len(model.config.reduction_layers)
    assert (out.kept_lengths[:, -1] < torch.tensor(LENGTHS)).any()
    assert calls == ["tolist"] * (2 + steps), calls
