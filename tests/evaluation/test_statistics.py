"""The statistics of an evaluation: the paired bootstrap (means and micro F1), the policy's reward, accuracy."""

import pytest
import torch

from trbert.evaluation import (
    Predictions,
    mean_reward,
    paired_bootstrap,
    statistics,
)
from trbert.tasks.classification import accuracy


# ---------------------------------------------------------------------------- statistics
def test_accuracy():
    assert accuracy(torch.tensor([0, 1, 2, 1]), [0, 1, 1, 1]) == 0.75
    with pytest.raises(ValueError):
        accuracy(torch.tensor([0, 1]), [0, 1, 1])


def test_mean_reward_is_the_policy_stage_reward_with_the_kept_tokens_of_inference():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    kept = torch.tensor([[5, 2], [10, 4]])  # two reduction steps; lengths 10 and 20: kept 0.5, 0.2 and 0.5, 0.2
    pred = Predictions(logits, logits.argmax(-1), torch.tensor([10, 20]), kept, torch.ones(2, dtype=torch.float64), 0.0)
    labels = [0, 0]  # the second example is wrong
    loss = (torch.log1p(torch.exp(torch.tensor(-2.0))) + torch.log1p(torch.exp(torch.tensor(1.0)))).item() / 2
    result = mean_reward(pred, labels, alpha=2.0)
    assert result["loss"] == pytest.approx(loss)
    assert result["kept"] == pytest.approx(0.35)
    assert result["reward"] == pytest.approx(-loss - 2.0 * 0.35)
    assert result["accuracy"] == 0.5
    plain = Predictions(logits, logits.argmax(-1), torch.tensor([10, 20]), None, torch.ones(2, dtype=torch.float64), 0.0)
    assert mean_reward(plain, labels, alpha=2.0)["reward"] == pytest.approx(-loss - 2.0)  # everything kept
    with pytest.raises(ValueError, match="one label per text"):
        mean_reward(pred, [0], alpha=1.0)


def test_paired_bootstrap_of_identical_systems_is_zero():
    correct = torch.rand(100, generator=torch.Generator().manual_seed(0)) < 0.7
    result = paired_bootstrap(correct, correct.clone())
    assert (result.diff, result.low, result.high) == (0.0, 0.0, 0.0)


def test_paired_bootstrap_of_a_system_better_on_ten_examples():
    b = torch.zeros(100, dtype=torch.bool)
    b[:70] = True
    a = b.clone()
    a[70:80] = True  # a is right on 10 more examples, wrong on none that b gets right
    result = paired_bootstrap(a, b)
    assert result.diff == pytest.approx(0.10)
    assert 0.0 < result.low < 0.10 < result.high
    reverse = paired_bootstrap(b, a)
    assert reverse.diff == pytest.approx(-0.10) and reverse.high < 0.0
    # Deterministic for a seed; another seed draws other resamples (seen with few of them).
    assert paired_bootstrap(a, b, seed=0) == result
    few = paired_bootstrap(a, b, n_resamples=20, seed=0)
    assert paired_bootstrap(a, b, n_resamples=20, seed=0) == few != paired_bootstrap(a, b, n_resamples=20, seed=1)
    # A wider confidence level gives a wider interval.
    wide = paired_bootstrap(a, b, confidence=0.99)
    assert wide.low <= result.low and wide.high >= result.high


def test_paired_bootstrap_draws_the_same_resamples_in_chunks(monkeypatch):
    b = torch.arange(50) % 3 == 0
    a = torch.arange(50) % 2 == 0
    whole = paired_bootstrap(a, b, n_resamples=100)
    monkeypatch.setattr(statistics, "_BOOTSTRAP_CHUNK", 50 * 7)  # 7 resamples at a time
    assert paired_bootstrap(a, b, n_resamples=100) == whole
    assert whole.diff == pytest.approx(a.double().mean() - b.double().mean())
    assert whole.low <= whole.diff <= whole.high


def test_paired_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError):
        paired_bootstrap(torch.ones(5, dtype=torch.bool), torch.ones(6, dtype=torch.bool))
    with pytest.raises(ValueError):
        paired_bootstrap(torch.ones(5, dtype=torch.bool), torch.ones(5, dtype=torch.bool), confidence=1.0)
