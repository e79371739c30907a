"""The learned TR-BERT policy: one small network per reduction step gives each token a keep probability."""

import torch
import torch.nn.functional as F
from torch import nn

from .base import KeepStrategy, StepProposal


class KeepPolicy(nn.Module):
    """p = sigmoid(W2 gelu(W1 h + b1) + b2): one small network per reduction step."""

    def __init__(self, hidden_size: int, policy_hidden_size: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, policy_hidden_size)
        self.act = nn.GELU()
        self.out = nn.Linear(policy_hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled(hidden.device.type):
            # In the weights' precision under mixed-precision autocast: in bfloat16, 1 - p rounds to 0 for
            # confident keeps and the log-probability of skipping them would be -inf.
            with torch.autocast(hidden.device.type, enabled=False):
                return self(hidden.to(self.dense.weight.dtype))
        if hidden.dtype in (torch.bfloat16, torch.float16):
            # A half-precision model (on a GPU) still decides in fp32: a bfloat16 probability has 8 bits, so
            # many tokens would tie and which of them are kept would turn on rounding. The network is tiny.
            h = self.act(F.linear(hidden.float(), self.dense.weight.float(), self.dense.bias.float()))
            return torch.sigmoid(F.linear(h, self.out.weight.float(), self.out.bias.float())).squeeze(-1)
        return torch.sigmoid(self.out(self.act(self.dense(hidden)))).squeeze(-1)


class PolicyStrategy(KeepStrategy):
    """The learned TR-BERT policy.

    `config.keep_rule="threshold"` (the paper's rule): keep a token when its keep probability reaches
    `config.keep_threshold`. `"expected"`: keep each example's round(sum of p) most probable tokens,
    the number a sampled trajectory keeps on average, which matches what the policy was trained with
    while its probabilities are still far from 0 and 1.
    """

    samples = True

    def propose(self, step, tokens, policy, config):
        if policy is None:
            raise ValueError(f"the model has no policy networks (selection={config.selection!r}): "
                             "PolicyStrategy needs a model made with selection='policy'")
        prob = policy(tokens.hidden)
        if config.keep_rule == "expected":
            # Summed in fp32: a bfloat16 sum moves in steps of 2 past 256 (4 past 512), and on a GPU adds in that precision
            expected = prob.new_zeros(tokens.counts.shape[0], dtype=torch.float32).scatter_add(0, tokens.example, prob.float())
            budget = torch.clamp(torch.round(expected).long(), min=1)
            return StepProposal(keep=torch.ones_like(prob, dtype=torch.bool), score=prob, prob=prob, budget=budget)
        return StepProposal(keep=prob >= config.keep_threshold, score=prob, prob=prob)

    @staticmethod
    def selection_macs(config, n):
        """The policy network on n tokens: n (d p + p), p its width."""
        n = n.to(torch.float64)
        return n * (config.hidden_size * config.policy_hidden_size + config.policy_hidden_size)
