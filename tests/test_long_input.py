"""Long documents: segments below the first reduction step, the whole document above it."""

import pytest
import torch
from builders import spread_policy, tiny_batch, tiny_config
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertModel

import trbert

LIMIT = 64  # the tiny config's positions


def long_model(**overrides):
    config = tiny_config(long_input=True, **overrides)
    return trbert.TRBertModel(config, add_pooling_layer=False).eval()


def test_a_document_within_one_segment_equals_the_plain_model():
    plain = BertModel(tiny_config(), add_pooling_layer=False).eval()
    model = long_model(keep_threshold=0.0)
    model.load_state_dict(plain.state_dict(), strict=False)
    ids, mask = tiny_batch([60, 33])
    with torch.no_grad():
        a, b = model(input_ids=ids, attention_mask=mask), plain(input_ids=ids, attention_mask=mask)
    torch.testing.assert_close(a.last_hidden_state[mask.bool()], b.last_hidden_state[mask.bool()], atol=1e-5, rtol=0)


def test_segments_below_the_first_step_and_the_whole_document_above():
    """Every token kept: layer 0 runs on each 64-token segment with positions from 0; layers 1-3 on all 150."""
    model = long_model(keep_threshold=0.0, reduction_layers=[1, 2])
    ids, mask = tiny_batch([150])
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
        emb = model.embeddings(input_ids=ids, position_ids=(torch.arange(150) % LIMIT)[None])
        h = torch.cat([model.encoder.layer[0](emb[:, s:s + LIMIT]) for s in range(0, 150, LIMIT)], dim=1)
        for layer in model.encoder.layer[1:]:
            h = layer(h)
    torch.testing.assert_close(out.last_hidden_state, h, atol=1e-5, rtol=0)
    assert out.kept_lengths.tolist() == [[150, 150]]


def test_a_step_on_the_embeddings_sends_the_whole_document_through_every_layer():
    """First step at layer 0: positions still count from 0 in each segment, but every layer attends across
    the whole document (what `trbert long` relies on when it switches an article model to long input)."""
    model = long_model(keep_threshold=0.0, reduction_layers=[0, 2])
    ids, mask = tiny_batch([150])
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
        h = model.embeddings(input_ids=ids, position_ids=(torch.arange(150) % LIMIT)[None])
        for layer in model.encoder.layer:
            h = layer(h)
    torch.testing.assert_close(out.last_hidden_state, h, atol=1e-5, rtol=0)
    assert out.kept_lengths.tolist() == [[150, 150]]


def test_long_documents_reduce_and_are_batch_invariant():
    model = spread_policy(long_model(reduction_layers=[1, 2]))
    lengths = [150, 64, 200, 20]
    ids, mask = tiny_batch(lengths)
    with torch.no_grad():
        batch = model(input_ids=ids, attention_mask=mask)
        assert (batch.kept_lengths[:, -1] < torch.tensor(lengths)).all()
        for b, n in enumerate(lengths):
            alone = model(input_ids=ids[b:b + 1, :n])
            assert alone.kept_lengths.tolist() == batch.kept_lengths[b:b + 1].tolist()
            torch.testing.assert_close(alone.last_hidden_state[0], batch.last_hidden_state[b, :n], atol=1e-5, rtol=0)


def test_long_document_heads_and_cost():
    config = tiny_config(long_input=True, hidden_size=64, intermediate_size=128, num_labels=3)
    config._attn_implementation = "eager"
    model = spread_policy(trbert.TRBertForSequenceClassification(config).eval())
    ids, mask = tiny_batch([300, 130])
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = model.bert(input_ids=ids, attention_mask=mask, restore=False)
    cost = trbert.reduction_cost(config, mask.sum(1), out.kept_lengths)
    assert cost.macs.sum().item() == pytest.approx(counter.get_total_flops() / 2, rel=0.01)
    # The full model of a long document is the segment baseline: every layer on each segment alone.
    segments = [64, 64, 64, 64, 44]
    baseline = sum(trbert.cost.layer_macs(config, torch.tensor(s)) for s in segments) * config.num_hidden_layers
    assert cost.full_macs[0].item() == pytest.approx(baseline.item())
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    tagger = spread_policy(trbert.TRBertForTokenClassification(config).eval())
    with torch.no_grad():
        assert tagger(input_ids=ids, attention_mask=mask).logits.shape == (2, 300, 3)


def test_long_input_errors():
    ids, mask = tiny_batch([100])
    with pytest.raises(ValueError, match="long_input=True"):
        trbert.TRBertModel(tiny_config())(input_ids=ids, attention_mask=mask)
    model = long_model()
    with pytest.raises(ValueError, match="removal mode"):
        model(input_ids=ids, attention_mask=mask, masked=True)
    with pytest.raises(ValueError, match="position_ids"):
        model(input_ids=ids, attention_mask=mask, position_ids=torch.arange(100)[None])
