"""The reduction mechanism: removal, masking, restore, always-kept tokens, budgets, batch invariance."""

import pytest
import torch
from builders import LENGTHS, SEP, decisions, reducing_model, spread_policy, tiny_batch, tiny_config

import trbert


@pytest.mark.parametrize("execution", ["packed", "padded"])
@pytest.mark.parametrize("cls", [trbert.TRBertForSequenceClassification, trbert.TRBertForTokenClassification])
def test_batch_invariance(cls, execution):
    model = reducing_model(cls, execution=execution)
    ids, mask = tiny_batch(LENGTHS)
    with torch.no_grad():
        batch = model(input_ids=ids, attention_mask=mask)
        for b, length in enumerate(LENGTHS):
            alone = model(input_ids=ids[b : b + 1, :length])
            assert alone.kept_lengths.tolist() == batch.kept_lengths[b : b + 1].tolist()
            if cls is trbert.TRBertForTokenClassification:
                torch.testing.assert_close(alone.logits[0], batch.logits[b, :length], atol=1e-5, rtol=0)
            else:
                torch.testing.assert_close(alone.logits[0], batch.logits[b], atol=1e-5, rtol=0)


def test_packed_and_padded_execution_agree():
    ids, mask = tiny_batch(LENGTHS)
    packed = reducing_model(execution="packed")
    padded = reducing_model(execution="padded")
    padded.load_state_dict(packed.state_dict())
    with torch.no_grad():
        a, b = packed(input_ids=ids, attention_mask=mask), padded(input_ids=ids, attention_mask=mask)
    assert a.kept_lengths.tolist() == b.kept_lengths.tolist()
    torch.testing.assert_close(a.logits[mask.bool()], b.logits[mask.bool()], atol=1e-5, rtol=0)


@pytest.mark.parametrize("cls", [trbert.TRBertForQuestionAnswering, trbert.TRBertForTokenClassification,
                                 trbert.TRBertForSequenceClassification])
def test_masked_training_forward_equals_removal_for_same_decisions(cls):
    model = reducing_model(cls) if cls is not trbert.TRBertForQuestionAnswering else spread_policy(
        cls(tiny_config(num_labels=2)).eval())
    ids, mask = tiny_batch(LENGTHS)
    actions = decisions(model, ids, mask)
    with torch.no_grad():
        removed = model(input_ids=ids, attention_mask=mask, keep_actions=actions)
        masked = model(input_ids=ids, attention_mask=mask, keep_actions=actions, masked=True)
        thresholded = model(input_ids=ids, attention_mask=mask, masked=True)  # same decisions, made in masked mode
    assert removed.kept_lengths.tolist() == masked.kept_lengths.tolist() == thresholded.kept_lengths.tolist()
    torch.testing.assert_close(removed.keep_log_prob, masked.keep_log_prob, atol=1e-5, rtol=0)
    for field in ("logits", "start_logits", "end_logits"):
        if hasattr(removed, field) and getattr(removed, field) is not None:
            a, b = getattr(removed, field), getattr(masked, field)
            if a.dim() == 2 and a.shape[1] == ids.shape[1]:
                a, b = a[mask.bool()], b[mask.bool()]
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_restore_puts_each_state_back_at_its_position():
    """A skipped token's final state is its state entering the layer after the step that skipped it."""
    model = reducing_model(trbert.TRBertModel)  # reduction steps before layers 1 and 2 (of 4)
    ids, mask = tiny_batch(LENGTHS)
    actions = decisions(model, ids, mask)
    states = {}
    hooks = [layer.register_forward_pre_hook(lambda m, args, i=i: states.__setitem__(i, args[0]))
             for i, layer in enumerate(model.encoder.layer)]
    with torch.no_grad():  # masked mode keeps [B, n, d] at every layer, so states align with positions
        model(input_ids=ids, attention_mask=mask, masked=True)
        restored = model(input_ids=ids, attention_mask=mask).last_hidden_state
    for h in hooks:
        h.remove()
    steps = model.config.reduction_layers
    skipped_at_0 = mask.bool() & ~actions[0]
    skipped_at_1 = actions[0] & ~actions[1]
    assert skipped_at_0.any() and skipped_at_1.any()
    torch.testing.assert_close(restored[skipped_at_0], states[steps[0]][skipped_at_0], atol=1e-5, rtol=0)
    torch.testing.assert_close(restored[skipped_at_1], states[steps[1]][skipped_at_1], atol=1e-5, rtol=0)
    assert restored.shape == (*ids.shape, model.config.hidden_size)


def test_padding_never_kept_and_cls_always_kept():
    model = reducing_model()
    with torch.no_grad():
        for p in model.base_model.encoder.policy:
            p.out.bias.fill_(-50.0)  # the policy wants to skip everything
    ids, mask = tiny_batch(LENGTHS)
    out = model(input_ids=ids, attention_mask=mask)
    assert out.kept_lengths.tolist() == [[1, 1]] * len(LENGTHS)  # only [CLS]
    with torch.no_grad():
        for p in model.base_model.encoder.policy:
            p.out.bias.fill_(50.0)  # keep everything: never more than the real tokens
    actions = decisions(model, ids, mask)
    assert all((a <= mask.bool()).all() for a in actions)
    assert model(input_ids=ids, attention_mask=mask).kept_lengths[:, 1].tolist() == LENGTHS


@pytest.mark.parametrize("ratio", [0.5, 0.2])
def test_max_keep_ratio_is_respected(ratio):
    model = reducing_model(max_keep_ratio=ratio)
    with torch.no_grad():
        for p in model.base_model.encoder.policy:
            p.out.bias.fill_(3.0)  # keeps nearly everything without the budget
    ids, mask = tiny_batch(LENGTHS)
    kept = model(input_ids=ids, attention_mask=mask).kept_lengths
    budget = torch.clamp(torch.floor(mask.sum(1) * ratio + 1e-6).long(), min=1)
    assert (kept <= budget[:, None]).all()
    assert (kept[:, 0] == budget).sum() >= 3  # the budget binds


def test_budget_keeps_highest_probabilities():
    model = reducing_model(max_keep_ratio=0.3, reduction_layers=[1])
    ids, mask = tiny_batch([30])
    encoder = model.base_model.encoder
    probs = {}
    original = encoder._select

    def spy(step, tokens, input_ids, action, sample):
        keep, *rest = original(step, tokens, input_ids, action, sample)
        probs["p"], probs["keep"] = encoder.policy[step](tokens.hidden), keep
        return (keep, *rest)

    encoder._select = spy
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    p, keep = probs["p"], probs["keep"]
    assert keep[0] and keep.sum() == 9
    p_rest = p[1:]
    assert p_rest[keep[1:]].min() >= p_rest[~keep[1:]].max()


def test_keep_sep_and_first_segment():
    ids, mask = tiny_batch([25])
    ids[0, 8] = SEP  # question = positions 0..8
    model = reducing_model(reduction_layers=[1], keep_sep=True, keep_first_segment=True)
    with torch.no_grad():
        for p in model.base_model.encoder.policy:
            p.out.bias.fill_(-50.0)
    (keep,) = decisions(model, ids, mask)
    expected = torch.zeros(25, dtype=torch.bool)
    expected[:9] = True
    expected[24] = True  # final [SEP]
    assert keep[0].tolist() == expected.tolist()


def test_sampling_and_log_probs():
    model = reducing_model(trbert.TRBertForSequenceClassification).train()
    ids, mask = tiny_batch(LENGTHS)
    torch.manual_seed(3)
    out = model(input_ids=ids, attention_mask=mask, labels=torch.zeros(5, dtype=torch.long))
    assert out.keep_log_prob.shape == (5,) and out.keep_log_prob.requires_grad
    assert out.kept_fraction.shape == (5, 2)
    torch.testing.assert_close(out.kept_fraction, out.kept_lengths / mask.sum(1, keepdim=True))
    # The log-probability equals the sum of log p(action) computed by hand for a one-step model.
    model = reducing_model(trbert.TRBertForSequenceClassification, reduction_layers=[0]).eval()
    ids, mask = tiny_batch([6])
    action = torch.tensor([[True, False, True, True, False, False]])
    out = model(input_ids=ids, attention_mask=mask, keep_actions=[action])
    emb = model.bert.embeddings(input_ids=ids)
    p = model.bert.encoder.policy[0](emb)[0]
    expected = sum(torch.log(p[i] if action[0, i] else 1 - p[i]) for i in range(1, 6))  # [CLS] is not an action
    torch.testing.assert_close(out.keep_log_prob[0], expected, atol=1e-5, rtol=1e-5)
    assert out.kept_lengths.tolist() == [[3]]
    out.keep_log_prob.sum().backward()
    assert model.bert.encoder.policy[0].dense.weight.grad.abs().sum() > 0








def test_one_stacked_query_key_value_projection_gives_the_three_projections():
    model = reducing_model(trbert.TRBertForSequenceClassification)
    ids, mask = tiny_batch(LENGTHS)
    with torch.no_grad():
        separate = model(input_ids=ids, attention_mask=mask)
        model.bert.encoder.fuse_query_key_value()
        assert len(model.bert.encoder.qkv) == model.config.num_hidden_layers
        fused = model(input_ids=ids, attention_mask=mask)
    assert torch.equal(fused.kept_lengths, separate.kept_lengths)
    torch.testing.assert_close(fused.logits, separate.logits, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cls", [trbert.TRBertForSequenceClassification, trbert.TRBertForTokenClassification])
def test_graph_execution_equals_packed(cls):
    """execution="graph" (removal without host read-backs, what the ONNX export traces) keeps the same tokens
    and gives the same outputs as the packed removal, in a batch and per example."""
    packed = reducing_model(cls)
    graph = reducing_model(cls, execution="graph")
    graph.load_state_dict(packed.state_dict())
    ids, mask = tiny_batch(LENGTHS)
    with torch.no_grad():
        a, b = packed(input_ids=ids, attention_mask=mask), graph(input_ids=ids, attention_mask=mask)
        assert a.kept_lengths.tolist() == b.kept_lengths.tolist()
        assert (a.kept_lengths[:, -1] < torch.tensor(LENGTHS)).any()
        torch.testing.assert_close(b.logits[mask.bool()] if b.logits.dim() == 3 else b.logits,
                                   a.logits[mask.bool()] if a.logits.dim() == 3 else a.logits, atol=1e-5, rtol=0)
        alone = graph(input_ids=ids[2:3, :LENGTHS[2]])
        assert alone.kept_lengths.tolist() == b.kept_lengths[2:3].tolist()


def test_graph_execution_projects_only_the_tokens_each_example_keeps():
    """In graph mode the examples of a batch keep different counts; each layer's projections and feed-forward
    run on those tokens alone (no padding to the longest), attention on the grid of the longest."""
    model = reducing_model(trbert.TRBertForSequenceClassification, execution="graph")
    ids, mask = tiny_batch(LENGTHS)
    rows = []
    hooks = [layer.intermediate.dense.register_forward_hook(lambda m, x, y: rows.append(x[0].shape[0]))
             for layer in model.bert.encoder.layer]
    with torch.no_grad():
        kept = model(input_ids=ids, attention_mask=mask).kept_lengths
    for h in hooks:
        h.remove()
    steps = model.config.reduction_layers
    per_layer = [sum(LENGTHS) if i < steps[0] else int(kept[:, sum(s <= i for s in steps) - 1].sum())
                 for i in range(model.config.num_hidden_layers)]
    assert rows == per_layer
    assert int(kept[:, -1].sum()) < len(LENGTHS) * int(kept[:, -1].max())  # padding would have been run


@pytest.mark.parametrize("mode", ["packed", "padded", "graph", "masked"])
def test_kept_steps_say_which_tokens_each_step_kept(mode):
    """`kept_steps` [B, n]: a token passed step s (kept_steps > s) exactly where step s kept it; padding -1."""
    from builders import keep_decisions

    model = reducing_model(trbert.TRBertForSequenceClassification,
                           execution=mode if mode != "masked" else "packed")
    ids, mask = tiny_batch(LENGTHS)
    out, steps = keep_decisions(model, input_ids=ids, attention_mask=mask, **({"masked": True} if mode == "masked" else {}))
    assert out.kept_steps.shape == ids.shape
    assert (out.kept_steps[~mask.bool()] == -1).all() and (out.kept_steps[mask.bool()] >= 0).all()
    for s, kept in enumerate(steps):
        assert torch.equal(out.kept_steps > s, kept)
        assert torch.equal((out.kept_steps > s).sum(1), out.kept_lengths[:, s])
    assert (out.kept_steps[mask.bool()] < len(steps)).any()  # some token was skipped
