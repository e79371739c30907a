"""Attention-based selections (PoWER-BERT / Length-Adaptive top-k, LTP thresholds): decisions, equivalences, cost."""

import math

import pytest
import torch
from builders import LABELS, TINY, synthetic, tiny_batch, tiny_config
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

import trbert
from trbert import training
from trbert.evaluation import model_macs
from trbert.reduction import ranks_within_examples

LENGTHS = [20, 9, 31, 3, 14]
TOPK = dict(selection="attention_topk", keep_fractions=[0.5, 0.25])
THRESHOLD = dict(selection="attention_threshold", score_thresholds=[0.04, 0.08])


def make(cls=trbert.TRBertForSequenceClassification, **overrides):
    return cls(tiny_config(num_labels=3, **overrides)).eval()


def packed_tokens(hidden, mask):
    """The Tokens of a batch as the first reduction step sees them (every real token present)."""
    example, position = mask.bool().nonzero(as_tuple=True)
    length = mask.sum(1)
    return trbert.Tokens(hidden[example, position], example, position, ranks_within_examples(example, length), length, length)


def captured_steps(model, ids, mask, **kwargs):
    """Per step: (tokens, keep) as `_select` saw and decided them."""
    encoder, seen = model.base_model.encoder, []
    original = encoder._select

    def spy(step, tokens, input_ids, action, sample):
        keep, *rest = original(step, tokens, input_ids, action, sample)
        seen.append((tokens, keep))
        return (keep, *rest)

    encoder._select = spy
    try:
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask, **kwargs)
    finally:
        encoder._select = original
    return seen


def test_attention_received_sums_to_one_and_matches_eager_probabilities():
    model = make(**TOPK)
    ids, mask = tiny_batch(LENGTHS)
    with torch.no_grad():
        hidden = model.bert.embeddings(input_ids=ids)
        tokens = packed_tokens(hidden, mask)
        layer = model.bert.encoder.layer[1]
        score = trbert.attention_received(layer, tokens)
    assert score.shape == tokens.example.shape and (score >= 0).all() and (score <= 1).all()
    sums = torch.zeros(len(LENGTHS)).index_add(0, tokens.example, score)
    torch.testing.assert_close(sums, torch.ones(len(LENGTHS)), atol=1e-5, rtol=0)
    # By hand for one example: the eager attention probabilities, averaged over heads and queries.
    b, n = 2, LENGTHS[2]
    layer.attention.self.config._attn_implementation = "eager"
    with torch.no_grad():
        _, probs = layer.attention.self(hidden[b : b + 1, :n])  # [1, H, n, n]
    torch.testing.assert_close(score[tokens.example == b], probs[0].mean(0).mean(0), atol=1e-6, rtol=0)


def test_attention_received_is_per_example():
    model = make(**TOPK)
    ids, mask = tiny_batch(LENGTHS)
    layer = model.bert.encoder.layer[1]
    with torch.no_grad():
        hidden = model.bert.embeddings(input_ids=ids)
        batch = trbert.attention_received(layer, packed_tokens(hidden, mask))
        example = packed_tokens(hidden, mask).example
        for b, n in enumerate(LENGTHS):
            alone = trbert.attention_received(layer, packed_tokens(hidden[b : b + 1, :n], mask[b : b + 1, :n]))
            torch.testing.assert_close(alone, batch[example == b], atol=1e-6, rtol=0)


@pytest.mark.parametrize("execution", ["packed", "padded"])
@pytest.mark.parametrize("selection", [TOPK, THRESHOLD])
def test_decisions_and_outputs_do_not_depend_on_the_batch(selection, execution):
    model = make(execution=execution, **selection)
    ids, mask = tiny_batch(LENGTHS)
    with torch.no_grad():
        batch = model(input_ids=ids, attention_mask=mask)
        for b, n in enumerate(LENGTHS):
            alone = model(input_ids=ids[b : b + 1, :n])
            assert alone.kept_lengths.tolist() == batch.kept_lengths[b : b + 1].tolist()
            torch.testing.assert_close(alone.logits[0], batch.logits[b], atol=1e-5, rtol=0)
    assert (batch.kept_lengths[:, -1] < mask.sum(1)).any()


@pytest.mark.parametrize("ratio", [1.0, 0.3])
def test_topk_keeps_the_expected_counts_by_attention_received(ratio):
    model = make(max_keep_ratio=ratio, **TOPK)
    ids, mask = tiny_batch(LENGTHS)
    with torch.no_grad():
        kept = model(input_ids=ids, attention_mask=mask).kept_lengths
    expected = []
    for n in LENGTHS:
        cap = math.floor(n * ratio + 1e-6)
        first = max(1, min(cap, max(1, round(0.5 * n))))
        expected.append([first, max(1, min(first, cap, max(1, round(0.25 * n))))])
    assert kept.tolist() == expected
    # The kept tokens are those receiving the most attention ([CLS] aside), scored with the layer after the step.
    for step, (tokens, keep) in enumerate(captured_steps(model, ids, mask)):
        score = trbert.attention_received(model.bert.encoder.layer[model.config.reduction_layers[step]], tokens)
        for b in range(len(LENGTHS)):
            mine = (tokens.example == b) & (tokens.position > 0)
            s, k = score[mine], keep[mine]
            if k.any() and (~k).any():
                assert s[k].min() >= s[~k].max()


@pytest.mark.parametrize("overrides", [
    dict(selection="attention_topk", keep_fractions=[1.0, 1.0]),
    dict(selection="attention_threshold", score_thresholds=[0.0, 0.0]),
])
@pytest.mark.parametrize("masked", [False, True])
def test_keeping_every_token_equals_transformers(overrides, masked, tmp_path):
    kw = {k: v for k, v in TINY.items() if k != "sep_token_id"}
    plain = BertForSequenceClassification(BertConfig(**kw, num_labels=3)).eval()
    plain.save_pretrained(tmp_path)
    model = trbert.TRBertForSequenceClassification.from_pretrained(tmp_path, **overrides).eval()
    assert len(model.bert.encoder.policy) == 0  # no policy networks
    ids, mask = tiny_batch([13, 7, 20, 4], n=24)
    with torch.no_grad():
        expected = plain(input_ids=ids, attention_mask=mask).logits
        out = model(input_ids=ids, attention_mask=mask, masked=masked)
    assert out.kept_lengths.tolist() == [[int(n)] * 2 for n in mask.sum(1)]
    torch.testing.assert_close(out.logits, expected, atol=1e-5, rtol=0)


def test_threshold_one_keeps_only_cls():
    model = make(selection="attention_threshold", score_thresholds=[1.0, 1.0])
    ids, mask = tiny_batch(LENGTHS)
    with torch.no_grad():
        assert model(input_ids=ids, attention_mask=mask).kept_lengths.tolist() == [[1, 1]] * len(LENGTHS)


@pytest.mark.parametrize("cls", [trbert.TRBertForSequenceClassification, trbert.TRBertForTokenClassification])
@pytest.mark.parametrize("selection", [TOPK, THRESHOLD])
def test_removal_equals_masked(selection, cls):
    model = make(cls, **selection)
    ids, mask = tiny_batch(LENGTHS)
    with torch.no_grad():
        removal = model(input_ids=ids, attention_mask=mask, masked=False)
        masked = model(input_ids=ids, attention_mask=mask, masked=True)
    assert removal.kept_lengths.tolist() == masked.kept_lengths.tolist()
    assert (removal.kept_lengths[:, -1] < mask.sum(1)).any()
    if cls is trbert.TRBertForTokenClassification:
        real = mask.bool()
        torch.testing.assert_close(removal.logits[real], masked.logits[real], atol=1e-5, rtol=0)
    else:
        torch.testing.assert_close(removal.logits, masked.logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("selection", [TOPK, THRESHOLD])
def test_training_mode_applies_the_rule(selection):
    model = make(**selection).train()
    ids, mask = tiny_batch(LENGTHS)
    labels = torch.tensor([0, 1, 2, 0, 1])
    with torch.no_grad():
        rule = model.eval()(input_ids=ids, attention_mask=mask).kept_lengths
    model.train()
    modes = []
    for name in ("_forward_masked", "_forward_removal"):  # record which mode each call runs
        original = getattr(model.bert.encoder, name)
        setattr(model.bert.encoder, name, lambda *a, _f=original, _n=name, **k: modes.append(_n) or _f(*a, **k))
    for masked in (None, True):  # the training default (removal, for a rule) and masked
        out = model(input_ids=ids, attention_mask=mask, labels=labels, masked=masked)
        assert out.keep_log_prob is None and out.kept_lengths.tolist() == rule.tolist()
        model.zero_grad()
        out.loss.backward()
        assert model.bert.encoder.layer[-1].output.dense.weight.grad.abs().sum() > 0
    assert modes == ["_forward_removal", "_forward_masked"]
    with pytest.raises(ValueError, match="no keep probabilities to sample from"):
        model.eval()(input_ids=ids, attention_mask=mask, sample=True)


def test_finetune_with_a_selection_in_place(backbone, tmp_path):
    source = tmp_path / "source"
    model = trbert.TRBertForSequenceClassification.from_pretrained(
        backbone, num_labels=3, selection="attention_topk", keep_fractions=[0.5])
    model.save_pretrained(source)
    BertTokenizerFast.from_pretrained(backbone).save_pretrained(source)
    settings = training.StageSettings(epochs=1, learning_rate=1e-3, batch_size=8, max_length=64, save_steps=1000)
    out = training.finetune(str(source), synthetic(16, seed=1), tmp_path / "tuned", settings, label_names=LABELS)
    tuned = trbert.TRBertForSequenceClassification.from_pretrained(out)
    assert tuned.config.selection == "attention_topk" and tuned.config.keep_fractions == [0.5]
    assert isinstance(tuned.bert.encoder.strategy, trbert.AttentionTopKStrategy)
    assert not torch.equal(tuned.classifier.weight, model.classifier.weight)


def test_selection_cost_is_counted():
    config = tiny_config(reduction_layers=[1, 2], **TOPK)
    d, f = config.hidden_size, config.intermediate_size
    lengths, kept = torch.tensor([10]), torch.tensor([[5, 3]])
    layers = sum(4 * n * d * d + 2 * n * d * f + 2 * n * n * d for n in (10, 5, 3, 3))
    selection = sum(2 * n * d * d + n * n * d for n in (10, 5))  # each step scores the tokens present before it
    strategy = trbert.AttentionTopKStrategy(torch.nn.ModuleList())
    for policy in (strategy, True):
        assert trbert.reduction_cost(config, lengths, kept, strategy=policy).macs.item() == layers + selection
    assert trbert.reduction_cost(config, lengths, kept, strategy=False).macs.item() == layers
    # The model's current strategy decides what model_macs counts.
    model = make(reduction_layers=[1, 2], **TOPK)
    assert model_macs(model, lengths, kept).item() == layers + selection
    model.set_strategy(trbert.FixedFractionStrategy([0.5, 0.3]))
    assert model_macs(model, lengths, kept).item() == layers


@pytest.mark.parametrize("selection", [TOPK, THRESHOLD])
def test_cost_matches_flop_counter(selection):
    config = tiny_config(hidden_size=64, intermediate_size=128, max_position_embeddings=128, **selection)
    config._attn_implementation = "eager"
    model = trbert.TRBertModel(config, add_pooling_layer=False).eval()
    ids, mask = tiny_batch([40])
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, restore=False)
    assert (out.kept_lengths[:, -1] < 40).all()
    cost = trbert.reduction_cost(config, mask.sum(1), out.kept_lengths, strategy=model.encoder.strategy)
    assert cost.macs.item() == pytest.approx(counter.get_total_flops() / 2, rel=0.01)


@pytest.mark.parametrize("overrides,match", [
    (dict(selection="attention_topk"), "needs keep_fractions"),
    (dict(selection="attention_topk", keep_fractions=[0.5]), r"keep_fractions=\[0.5\] has 1 values but there are 2"),
    (dict(selection="attention_topk", keep_fractions=[0.5, 0.0]), r"must each lie in \(0, 1\]"),
    (dict(selection="attention_threshold"), "needs score_thresholds"),
    (dict(selection="attention_threshold", score_thresholds=[0.1, 1.5]), r"must each lie in \[0, 1\]"),
    (dict(score_thresholds=[0.1, 0.2, 0.3]), "has 3 values but there are 2 reduction steps"),
])
def test_bad_selection_settings(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny_config(**overrides)


def test_strategy_misuse():
    model = make(**TOPK)
    ids, mask = tiny_batch([10])
    model.set_strategy(trbert.PolicyStrategy())
    with pytest.raises(ValueError, match="no policy networks"):
        model(input_ids=ids)
    policy_model = make()
    policy_model.set_strategy(trbert.ThresholdStrategy(policy_model.bert.encoder.layer))
    with pytest.raises(ValueError, match="needs config.score_thresholds"):
        policy_model(input_ids=ids)
    with pytest.raises(ValueError, match="must each lie in"):
        trbert.AttentionTopKStrategy(policy_model.bert.encoder.layer, [1.5])


def test_runtime_strategy_on_a_policy_model():
    model = make()
    model.set_strategy(trbert.AttentionTopKStrategy(model.bert.encoder.layer, [0.5, 0.25]))
    ids, mask = tiny_batch([20, 8])
    with torch.no_grad():
        assert model(input_ids=ids, attention_mask=mask).kept_lengths.tolist() == [[10, 5], [4, 2]]


@pytest.mark.parametrize("selection", [TOPK, THRESHOLD])
def test_save_and_load_keep_the_selection(selection, tmp_path):
    model = make(**selection)
    model.save_pretrained(tmp_path)
    loaded = trbert.TRBertForSequenceClassification.from_pretrained(tmp_path).eval()
    for key, value in selection.items():
        assert getattr(loaded.config, key) == value
    assert type(loaded.bert.encoder.strategy) is type(model.bert.encoder.strategy)
    ids, mask = tiny_batch(LENGTHS)
    with torch.no_grad():
        a, b = model(input_ids=ids, attention_mask=mask), loaded(input_ids=ids, attention_mask=mask)
    assert a.kept_lengths.tolist() == b.kept_lengths.tolist()
    torch.testing.assert_close(a.logits, b.logits)


