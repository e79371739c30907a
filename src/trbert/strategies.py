"""Selection strategies: what decides, at a reduction step, which tokens go on.

A strategy looks at the tokens present at a step and returns a `StepProposal`. The reduction
mechanism (`trbert.reduction`) owns everything else: always-kept tokens, the keep budget,
sampling, the removal itself and the restore. A new strategy is a small class with one method
(and, when its selection costs compute, `selection_macs`).

Strategies without keep probabilities (every one but the learned policy) are rules: in training
mode, where sampling is the default, the rule applies as it is (there is nothing to sample); asking
to sample outside training mode is an error.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .cost import attention_macs, policy_macs

_MIN_WEIGHT = 1e-6  # a soft weight below this counts as this (log bias about -13.8)


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
    prediction: torch.Tensor | None = None  # [T, C] the strategy's own output for each token (early exit's
    # internal classifier): a token that leaves at this step takes it as its final output


class KeepStrategy:
    """Interface of a selection strategy."""

    # Whether it gives keep probabilities to sample from (the learned policy). Such a strategy trains in
    # masked mode by default; a rule trains in removal mode (the same result for the same decisions, and
    # cheaper: the skipped tokens are not computed).
    samples = False

    def propose(self, step: int, tokens: Tokens, policy: nn.Module | None, config) -> StepProposal:
        """`policy`: the step's policy network (None when the model has none); `config`: the model's TRBertConfig."""
        raise NotImplementedError

    def selection_macs(self, config, n: torch.Tensor) -> torch.Tensor:
        """Multiply-adds the selection costs at a step that sees `n` tokens (any shape, per example)."""
        return torch.zeros_like(n, dtype=torch.float64)


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
            expected = torch.zeros(len(tokens.present), dtype=prob.dtype, device=prob.device)
            expected = expected.index_add(0, tokens.example, prob)
            budget = torch.clamp(torch.round(expected).long(), min=1)
            return StepProposal(keep=torch.ones_like(prob, dtype=torch.bool), score=prob, prob=prob, budget=budget)
        return StepProposal(keep=prob >= config.keep_threshold, score=prob, prob=prob)

    def selection_macs(self, config, n):
        return policy_macs(config, n)


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
    original position, among the tokens still present) is below `config.exit_threshold`, and its label
    is that classifier's prediction."""

    def propose(self, step, tokens, classifier, config):
        if classifier is None:
            raise ValueError("the model has no early-exit classifiers: EarlyExitStrategy needs selection='early_exit'")
        logits = classifier(tokens.hidden)
        p = logits.float().softmax(-1)
        uncertainty = -(p * p.clamp_min(1e-12).log()).sum(-1) / math.log(p.shape[-1])
        pooled = window_max(uncertainty, tokens, config.exit_window)
        # A token that leaves is labelled by the classifier whose confidence let it leave.
        return StepProposal(keep=pooled >= config.exit_threshold, score=pooled, prediction=logits)

    def selection_macs(self, config, n):
        return policy_macs(config, n)


def window_max(values: torch.Tensor, tokens: Tokens, window: int) -> torch.Tensor:
    """[T] the largest of `values` over each token's neighbours within `window` positions, in its own
    example; tokens no longer present count as 0."""
    if window == 0:
        return values
    grid = values.new_zeros(len(tokens.present), int(tokens.position.max()) + 1)
    grid[tokens.example, tokens.position] = values
    pooled = F.max_pool1d(grid[:, None], kernel_size=2 * window + 1, stride=1, padding=window)[:, 0]
    return pooled[tokens.example, tokens.position]


def attention_received(layer: nn.Module, tokens: Tokens) -> torch.Tensor:
    """[T] significance of each present token: the attention it receives from the present tokens of its
    own example, computed with `layer`'s query and key projections (a `BertLayer`, the layer after the
    step) and averaged over heads and over the querying tokens. Per example the scores sum to 1, so they
    lie in [0, 1] and a token of an n-token example receives 1/n on average (LTP's normalisation: a fixed
    threshold removes relatively more of a long input, whose average score is lower)."""
    B, m = len(tokens.present), int(tokens.present.max())
    hidden = tokens.hidden.new_zeros(B, m, tokens.hidden.shape[-1])
    hidden[tokens.example, tokens.rank] = tokens.hidden
    present = torch.zeros(B, m, dtype=tokens.hidden.dtype, device=tokens.hidden.device)
    present[tokens.example, tokens.rank] = 1.0
    return padded_attention_received(layer, hidden, present)[tokens.example, tokens.rank]


def padded_attention_received(layer: nn.Module, hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """[B, n] `attention_received` on padded states [B, n, d]. `weight` [B, n]: each token's presence, 1 or
    0 (padding), or in between for a soft mask: it scales the token's part as a key (an additive log(weight)
    bias, as in the layers after a soft mask) and as a query (a weighted mean over the queries)."""
    sa = layer.attention.self
    B, n, _ = hidden.shape
    q, k = (proj(hidden).view(B, n, sa.num_attention_heads, sa.attention_head_size).transpose(1, 2)
            for proj in (sa.query, sa.key))
    weight = weight.float()
    bias = weight.clamp_min(_MIN_WEIGHT).log().masked_fill(weight == 0, float("-inf"))
    probs = ((q @ k.transpose(-1, -2)).float() * sa.scaling + bias[:, None, None, :]).softmax(-1)  # [B, H, n, n]
    queries = weight / weight.sum(1, keepdim=True)
    return torch.einsum("bhqk,bq->bk", probs, queries).div(sa.num_attention_heads).to(hidden.dtype)


class _AttentionStrategy(KeepStrategy):
    """A rule on `attention_received`, scored with the layer after each reduction step (`layers`: the
    encoder's `layer` ModuleList). `values`: one per step, instead of the config's."""

    field = ""  # the config field holding one value per step

    def __init__(self, layers: nn.ModuleList, values: list[float] | None = None):
        self.layers = layers
        self.values = None if values is None else [float(v) for v in values]

    def _value(self, step, config) -> float:
        values = self.values if self.values is not None else getattr(config, self.field)
        if values is None or step >= len(values):
            raise ValueError(f"{type(self).__name__} needs config.{self.field} with a value for step {step} "
                             f"(one per reduction step), got {values}")
        return values[step]

    def _scores(self, step, tokens, config):
        return attention_received(self.layers[config.reduction_layers[step]], tokens)

    def selection_macs(self, config, n):
        return attention_macs(config, n)


class AttentionTopKStrategy(_AttentionStrategy):
    """PoWER-BERT / Length-Adaptive Transformer: at step t each example keeps its
    round(keep_fractions[t] * original length) tokens (at least 1) that receive the most attention.
    Training-free: the fractions are a schedule chosen by the user (or searched)."""

    field = "keep_fractions"

    def __init__(self, layers: nn.ModuleList, fractions: list[float] | None = None):
        if fractions is not None and any(not 0.0 < f <= 1.0 for f in fractions):
            raise ValueError(f"fractions={fractions} must each lie in (0, 1]")
        super().__init__(layers, fractions)

    def propose(self, step, tokens, policy, config):
        fraction = self._value(step, config)
        budget = torch.clamp(torch.round(tokens.length * fraction).long(), min=1)
        keep = torch.ones_like(tokens.rank, dtype=torch.bool)
        return StepProposal(keep=keep, score=self._scores(step, tokens, config), budget=budget)


class ThresholdStrategy(_AttentionStrategy):
    """Learned Token Pruning: at step t a token goes on when the attention it receives is at least
    score_thresholds[t] (threshold 0 keeps every token, 1 only [CLS]). `trbert.ltp.learn_thresholds`
    learns the thresholds."""

    field = "score_thresholds"

    def __init__(self, layers: nn.ModuleList, thresholds: list[float] | None = None):
        if thresholds is not None and any(not 0.0 <= t <= 1.0 for t in thresholds):
            raise ValueError(f"thresholds={thresholds} must each lie in [0, 1]")
        super().__init__(layers, thresholds)

    def propose(self, step, tokens, policy, config):
        threshold = self._value(step, config)
        score = self._scores(step, tokens, config)
        return StepProposal(keep=score >= threshold, score=score)


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
        return torch.sigmoid(self.out(self.act(self.dense(hidden)))).squeeze(-1)
