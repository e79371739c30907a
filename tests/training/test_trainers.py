"""The Trainers' objectives: the residual heuristic for imitation warm-up, the policy's log-probabilities under mixed precision."""

import torch
from builders import MARKERS, keep_stats, synthetic, tiny_batch, tiny_config
from transformers import BertTokenizerFast

import trbert
from trbert import training


def test_keep_log_prob_is_computed_in_fp32_under_bf16_autocast():
    # Confident policies (p near 1) and actions that skip every token: in bfloat16 1 - p rounds to 0.
    model = trbert.TRBertForSequenceClassification(tiny_config(reduction_layers=[0, 2], num_labels=3)).train()
    for policy in model.bert.encoder.policy:
        torch.nn.init.constant_(policy.out.bias, 12.0)
    ids, mask = tiny_batch([20, 13, 30, 7])
    skip_all = [torch.zeros_like(ids)] * 2
    reference = model(input_ids=ids, attention_mask=mask, keep_actions=skip_all, masked=False).keep_log_prob
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(input_ids=ids, attention_mask=mask, keep_actions=skip_all, masked=False)
    assert out.keep_log_prob.dtype == torch.float32 and torch.isfinite(out.keep_log_prob).all()
    torch.testing.assert_close(out.keep_log_prob, reference, rtol=0.05, atol=0.0)
    # The first step skips all but [CLS], each at log(1 - sigmoid(12)) = -12 nats; the second has nothing to skip.
    torch.testing.assert_close(reference, -12.0 * (mask.sum(1) - 1).float(), rtol=1e-3, atol=0.0)


def test_residual_heuristic_scores_the_marker_highest(finetuned):
    from trbert.tasks import get_task

    model = trbert.TRBertForSequenceClassification.from_pretrained(finetuned, reduction_layers=[0]).eval()
    tok = BertTokenizerFast.from_pretrained(finetuned)
    data = synthetic(60, seed=4)
    enc = tok(list(data["text"]), return_tensors="pt", padding=True)
    labels = {"labels": torch.tensor(list(data["label"]))}
    scores, states = training.residual_scores(model, dict(enc), labels, get_task("classification"))
    assert len(scores) == 1 and scores[0].shape == enc["input_ids"].shape
    marker_ids = torch.tensor(tok.convert_tokens_to_ids(MARKERS))
    has_marker = torch.isin(enc["input_ids"], marker_ids)
    rows = has_marker.any(1)
    ranked = scores[0].masked_fill(enc["attention_mask"] == 0, -1)
    ranked[:, 0] = -1  # [CLS] is always kept: the ranking that matters is among the others
    best = ranked.argmax(1)
    top_is_marker = has_marker[torch.arange(len(best)), best]
    assert top_is_marker[rows].float().mean() >= 0.8, top_is_marker[rows].float().mean()
    [action] = training.residual_actions(model, dict(enc), labels, get_task("classification"))
    assert action[has_marker].float().mean() >= 0.9 and action.sum() < enc["attention_mask"].sum()


def test_policy_training_with_imitation_warm_up(finetuned, tmp_path):
    settings = training.StageSettings(epochs=3, learning_rate=1e-2, batch_size=32, max_length=64, samples=8,
                                      alpha=0.5, save_steps=1000, guide_rate=0.5)
    out = training.train_policy(finetuned, synthetic(300, seed=3), tmp_path / "policy", settings,
                                reduction_layers=[0])
    accuracy, marker_kept, other_kept, _ = keep_stats(out, synthetic(200, seed=2))
    assert accuracy >= 0.9 and marker_kept >= 0.95 and other_kept <= 0.3, (accuracy, marker_kept, other_kept)
