"""Selection strategies: what decides, at a reduction step, which tokens go on.

A strategy looks at the tokens present at a step and returns a `StepProposal`. The reduction
mechanism (`trbert.reduction`) owns everything else: always-kept tokens, the keep budget,
sampling, the removal itself and the restore. A new strategy is a small class with one method.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Tokens:
    """The tokens present at a reduction step, flattened over the batch (T tokens in all)."""

    hidden: torch.Tensor  # [T, d] hidden states entering the layer after the step
    example: torch.Tensor  # [T] index of the example each token belongs to
    position: torch.Tensor  # [T] original position of each token in its example
    rank: torch.Tensor  # [T] index of each token among the present tokens of its example
    present: torch.Tensor  # [B] number of tokens present in each example
    length: torch.Tensor  # [B] original number of non-padding tokens of each example


@dataclass
class StepProposal:
    """What a strategy proposes at one step; the mechanism turns it into keep decisions."""

    keep: torch.Tensor  # [T] bool: tokens the strategy would keep
    score: torch.Tensor  # [T] float: ranks tokens when a budget cuts (higher stays)
    prob: torch.Tensor | None = None  # [T] keep probabilities of a stochastic policy (for sampling, log-probs)
    budget: torch.Tensor | None = None  # [B] at most this many tokens per example


class KeepStrategy:
    """Interface of a selection strategy."""

    runs_policy = False  # whether it runs the policy networks (for cost accounting)

    def propose(self, step: int, tokens: Tokens, policy: nn.Module | None, config) -> StepProposal:
        """`policy`: the step's policy network; `config`: the model's TRBertConfig."""
        raise NotImplementedError


class PolicyStrategy(KeepStrategy):
    """The learned TR-BERT policy.

    `config.keep_rule="threshold"` (the paper's rule): keep a token when its keep probability reaches
    `config.keep_threshold`. `"expected"`: keep each example's round(sum of p) most probable tokens,
    the number a sampled trajectory keeps on average, which matches what the policy was trained with
    while its probabilities are still far from 0 and 1.
    """

    runs_policy = True

    def propose(self, step, tokens, policy, config):
        prob = policy(tokens.hidden)
        if config.keep_rule == "expected":
            expected = torch.zeros(len(tokens.present), dtype=prob.dtype, device=prob.device)
            expected = expected.index_add(0, tokens.example, prob)
            budget = torch.clamp(torch.round(expected).long(), min=1)
            return StepProposal(keep=torch.ones_like(prob, dtype=torch.bool), score=prob, prob=prob, budget=budget)
        return StepProposal(keep=prob >= config.keep_threshold, score=prob, prob=prob)


class FixedFractionStrategy(KeepStrategy):
    """Keep a fixed fraction of each example's original tokens at each step, bypassing the policy.

    `order="first"` keeps the leading tokens; `order="random"` a random subset of positions, drawn
    once per step from `seed`, so runs are reproducible and examples independent of their batch.
    Used to measure speed at known keep rates.
    """

    def __init__(self, fractions: list[float], order: str = "first", seed: int = 0):
        if order not in ("first", "random"):
            raise ValueError(f"order={order!r} must be 'first' or 'random'")
        if any(not 0.0 < f <= 1.0 for f in fractions):
            raise ValueError(f"fractions={fractions} must each lie in (0, 1]")
        self.fractions = list(fractions)
        self.order = order
        self.seed = seed

    def propose(self, step, tokens, policy, config):
        if step >= len(self.fractions):
            raise ValueError(f"FixedFractionStrategy has {len(self.fractions)} fractions but step {step} was asked")
        budget = torch.clamp(torch.round(tokens.length * self.fractions[step]).long(), min=1)
        if self.order == "first":
            score = -tokens.rank.to(tokens.hidden.dtype)
        else:
            # A fixed random score per original position: the same draw whatever else is in the batch.
            gen = torch.Generator(device="cpu").manual_seed(self.seed * 1000 + step)
            size = max(8192, int(tokens.position.max()) + 1)  # a fixed size keeps the draw the same
            table = torch.rand(size, generator=gen).to(tokens.hidden.device)
            score = table[tokens.position]
        keep = torch.ones_like(tokens.rank, dtype=torch.bool)
        return StepProposal(keep=keep, score=score, budget=budget)


class EarlyExitStrategy(KeepStrategy):
    """Token-level early exit (for token classification): the step's internal classifier predicts each
    present token's label; its uncertainty is the entropy of that prediction over log(num_labels). A
    token leaves when the largest uncertainty within `config.exit_window` neighbours on each side (by
    original position, among the tokens still present) is below `config.exit_threshold`."""

    runs_policy = True  # the internal classifiers run at every step

    def propose(self, step, tokens, classifier, config):
        p = classifier(tokens.hidden).float().softmax(-1)
        uncertainty = -(p * p.clamp_min(1e-12).log()).sum(-1) / math.log(p.shape[-1])
        pooled = window_max(uncertainty, tokens, config.exit_window)
        return StepProposal(keep=pooled >= config.exit_threshold, score=pooled)


def window_max(values: torch.Tensor, tokens: Tokens, window: int) -> torch.Tensor:
    """[T] the largest of `values` over each token's neighbours within `window` positions, in its own
    example; tokens no longer present count as 0."""
    if window == 0:
        return values
    grid = values.new_zeros(len(tokens.present), int(tokens.position.max()) + 1)
    grid[tokens.example, tokens.position] = values
    pooled = F.max_pool1d(grid[:, None], kernel_size=2 * window + 1, stride=1, padding=window)[:, 0]
    return pooled[tokens.example, tokens.position]


class KeepPolicy(nn.Module):
    """p = sigmoid(W2 gelu(W1 h + b1) + b2): one small network per reduction step."""

    def __init__(self, hidden_size: int, policy_hidden_size: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, policy_hidden_size)
        self.act = nn.GELU()
        self.out = nn.Linear(policy_hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.out(self.act(self.dense(hidden)))).squeeze(-1)
