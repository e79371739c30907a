"""Rules on the attention a token receives in the layer after a step (no training needed):
`AttentionTopKStrategy` (PoWER-BERT / Length-Adaptive Transformer: a fixed fraction of the most
attended tokens) and `ThresholdStrategy` (Learned Token Pruning: the tokens above a threshold per
step, learned by `trbert.strategies.ltp.learn_thresholds`)."""

import torch
from torch import nn

from .base import KeepStrategy, StepProposal, Tokens, budget_of

MIN_WEIGHT = 1e-6  # a soft weight below this counts as this (log bias about -13.8)


def attention_received(layer: nn.Module, tokens: Tokens) -> torch.Tensor:
    """[T] significance of each present token: the attention it receives from the present tokens of its
    own example, computed with `layer`'s query and key projections (a `BertLayer`, the layer after the
    step) and averaged over heads and over the querying tokens. Per example the scores sum to 1, so they
    lie in [0, 1] and a token of an n-token example receives 1/n on average (LTP's normalisation: a fixed
    threshold removes relatively more of a long input, whose average score is lower)."""
    B, m = len(tokens.counts), int(tokens.counts.max())
    hidden = tokens.hidden.new_zeros(B, m, tokens.hidden.shape[-1])
    hidden[tokens.example, tokens.rank] = tokens.hidden
    weight = torch.zeros(B, m, dtype=tokens.hidden.dtype, device=tokens.hidden.device)
    weight[tokens.example, tokens.rank] = 1.0
    return padded_attention_received(layer, hidden, weight)[tokens.example, tokens.rank]


def padded_attention_received(layer: nn.Module, hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """[B, n] `attention_received` on padded states [B, n, d]. `weight` [B, n]: each token's presence, 1 or
    0 (padding), or in between for a soft mask: it scales the token's part as a key (an additive log(weight)
    bias, as in the layers after a soft mask) and as a query (a weighted mean over the queries)."""
    sa = layer.attention.self
    B, n, _ = hidden.shape
    q, k = (proj(hidden).view(B, n, sa.num_attention_heads, sa.attention_head_size).transpose(1, 2)
            for proj in (sa.query, sa.key))
    weight = weight.float()
    bias = weight.clamp_min(MIN_WEIGHT).log().masked_fill(weight == 0, float("-inf"))
    probs = ((q @ k.transpose(-1, -2)).float() * sa.scaling + bias[:, None, None, :]).softmax(-1)  # [B, H, n, n]
    queries = weight / weight.sum(1, keepdim=True)
    return torch.einsum("bhqk,bq->bk", probs, queries).div(sa.num_attention_heads).to(hidden.dtype)


class AttentionRule(KeepStrategy):
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

    @staticmethod
    def selection_macs(config, n):
        """The query and key projections of the layer after the step, and the scores Q K^T: 2 n d^2 + n^2 d."""
        n, d = n.to(torch.float64), config.hidden_size
        return 2 * n * d * d + n * n * d


class AttentionTopKStrategy(AttentionRule):
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
        budget = budget_of(tokens, fraction)
        keep = torch.ones_like(tokens.rank, dtype=torch.bool)
        return StepProposal(keep=keep, score=self._scores(step, tokens, config), budget=budget)


class ThresholdStrategy(AttentionRule):
    """Learned Token Pruning: at step t a token goes on when the attention it receives is at least
    score_thresholds[t] (threshold 0 keeps every token, 1 only [CLS]). `trbert.strategies.ltp.learn_thresholds`
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
