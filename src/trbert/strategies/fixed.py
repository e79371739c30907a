"""Fixed keep fractions: each step keeps a set share of each example's tokens, bypassing any policy
(to measure the mechanism's speed at known keep rates, without training)."""

import torch

from .base import KeepStrategy, StepProposal, budget_of


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
        budget = budget_of(tokens, self.fractions[step])
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
