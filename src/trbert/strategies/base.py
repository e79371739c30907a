"""What every selection strategy shares: the tokens it sees, what it proposes, and its interface.

A strategy looks at the tokens present at a reduction step and returns a `StepProposal`. The
reduction mechanism (`trbert.reduction`) owns everything else: always-kept tokens, the keep budget,
sampling, the removal itself and the restore. A new strategy is a small class with `propose` (and,
when its selection costs compute, `selection_macs`).

Strategies without keep probabilities (every one but the learned policy) are rules: in training
mode, where sampling is the default, the rule applies as it is (there is nothing to sample); asking
to sample outside training mode is an error.
"""

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Tokens:
    """The tokens present at a reduction step, flattened over the batch (T tokens in all)."""

    hidden: torch.Tensor  # [T, d] hidden states entering the layer after the step
    example: torch.Tensor  # [T] index of the example each token belongs to
    position: torch.Tensor  # [T] original position of each token in its example
    rank: torch.Tensor  # [T] index of each token among the present tokens of its example
    counts: torch.Tensor  # [B] number of tokens present in each example
    length: torch.Tensor  # [B] original number of non-padding tokens of each example


@dataclass
class StepProposal:
    """What a strategy proposes at one step; the mechanism turns it into keep decisions."""

    keep: torch.Tensor  # [T] bool: tokens the strategy would keep
    score: torch.Tensor  # [T] float: ranks tokens when a budget cuts (higher stays)
    prob: torch.Tensor | None = None  # [T] keep probabilities of a stochastic policy (for sampling, log-probs)
    budget: torch.Tensor | None = None  # [B] at most this many tokens per example
    prediction: torch.Tensor | None = None  # [T, C] the strategy's own output for each token (early exit's
    # internal classifier): a token that leaves at this step takes it as its final output


class KeepStrategy:
    """Interface of a selection strategy."""

    # Whether it gives keep probabilities to sample from (the learned policy). Such a strategy trains in
    # masked mode by default; a rule trains in removal mode (the same result for the same decisions, and
    # cheaper: the skipped tokens are not computed).
    samples = False

    def propose(self, step: int, tokens: Tokens, policy: nn.Module | None, config) -> StepProposal:
        """`policy`: the step's own module (policy network or exit classifier; None when the model has
        none); `config`: the model's TRBertConfig."""
        raise NotImplementedError

    @staticmethod
    def selection_macs(config, n: torch.Tensor) -> torch.Tensor:
        """Multiply-adds the selection costs at a step that sees `n` tokens (any shape, per example)."""
        return torch.zeros_like(n, dtype=torch.float64)


def budget_of(tokens: Tokens, fraction: float) -> torch.Tensor:
    """[B] round(fraction x each example's original length) tokens, at least one."""
    return torch.clamp(torch.round(tokens.length * fraction).long(), min=1)
