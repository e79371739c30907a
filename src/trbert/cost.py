"""Cost accounting: the multiply-adds an encoder executes, from the real kept lengths.

Per layer on n tokens (d hidden, f feed-forward):
    4 n d^2      query, key, value and output projections
    2 n d f      feed-forward
    2 n^2 d      attention scores (Q K^T) and the weighted sum of values
    H n^2        MPNet only: its relative position bias added to each head's scores
With skipped tokens as keys and values (`skipped_as_keys`), a layer with n tokens going on and m
skipped ones also projects the m to keys and values (2 m d^2) and attends to them (2 n m d).
A long document (`long_input`, more tokens than the model's positions) runs the layers before the
first reduction step segment by segment, so their attention costs the sum over segments; its full
model is the segment baseline (every layer on each segment alone).
Per reduction step on n tokens, what the selection costs: each strategy's `selection_macs`
(the policy network n (d p + p), an early-exit classifier n d C, attention received
2 n d^2 + n^2 d, a fixed fraction 0).
Embeddings, layer norms, softmax, biases and the task head are not counted (they are small
and the same for every method).
"""

from dataclasses import dataclass

import torch

from .configuration import TRBertConfig
from .strategies import KeepStrategy, selection_macs


@dataclass
class Cost:
    macs: torch.Tensor  # [B] multiply-adds executed per example
    full_macs: torch.Tensor  # [B] multiply-adds of the full model on the same (unpadded) input
    speedup: torch.Tensor  # [B] full_macs / macs: the ideal speed-up

    @property
    def total_speedup(self) -> float:
        """The batch's ideal speed-up: total full cost over total executed cost."""
        return float(self.full_macs.sum() / self.macs.sum())


def layer_macs(config, n: torch.Tensor, skipped: torch.Tensor | None = None) -> torch.Tensor:
    d, f = config.hidden_size, config.intermediate_size
    n = n.to(torch.float64)
    m = torch.zeros_like(n) if skipped is None else skipped.to(torch.float64)
    bias = config.num_attention_heads * n * (n + m) if _position_bias(config) else 0.0
    return 4 * n * d * d + 2 * n * d * f + 2 * n * (n + m) * d + 2 * m * d * d + bias


def _position_bias(config) -> bool:
    """Whether the layers add a relative position bias to the attention scores (MPNet, trbert's or plain)."""
    return getattr(config, "backbone", None) == "mpnet" or getattr(config, "model_type", None) == "mpnet"


def segmented_layer_macs(config, n: torch.Tensor, limit: int | None = None) -> torch.Tensor:
    """One layer on n tokens; for a long document (`long_input`, or `limit` given) segment by segment."""
    if limit is None and getattr(config, "long_input", False):
        limit = config.segment_length
    if limit is None:
        return layer_macs(config, n)
    n = n.long()
    return (n // limit).to(torch.float64) * layer_macs(config, torch.tensor(limit)) + layer_macs(config, n % limit)


def tokens_per_layer(config: TRBertConfig, lengths: torch.Tensor, kept_lengths: torch.Tensor) -> torch.Tensor:
    """[B, L]: how many tokens each layer ran on, given each step's kept lengths."""
    per_layer = lengths[:, None].expand(-1, config.num_hidden_layers).clone()
    for step, layer in enumerate(config.reduction_layers):
        per_layer[:, layer:] = kept_lengths[:, step : step + 1]
    return per_layer


def reduction_cost(
    config: TRBertConfig, lengths: torch.Tensor, kept_lengths: torch.Tensor | None, strategy: bool | KeepStrategy = True
) -> Cost:
    """Executed and full multiply-adds per example.

    lengths: [B] non-padding tokens of each example (e.g. `attention_mask.sum(1)`).
    kept_lengths: [B, steps] from a trbert output, or None for the full model (no reduction steps run).
    strategy: what the selection cost: the strategy that ran (its `selection_macs`), True for the
        selection of `config.selection`, or False for none (strategies that bypass the policies).
    """
    lengths = lengths.detach().cpu().long()
    full = config.num_hidden_layers * segmented_layer_macs(config, lengths)
    if kept_lengths is None:
        return Cost(full, full, torch.ones_like(full))
    kept_lengths = kept_lengths.detach().cpu().long()
    per_layer = tokens_per_layer(config, lengths, kept_lengths)
    skipped = lengths[:, None] - per_layer if getattr(config, "skipped_as_keys", False) else None
    layer_cost = layer_macs(config, per_layer, skipped)
    first = config.reduction_layers[0] if kept_lengths.shape[1] else config.num_hidden_layers
    layer_cost[:, :first] = segmented_layer_macs(config, lengths)[:, None]  # before any step: by segment
    macs = layer_cost.sum(1)
    if strategy is not False and kept_lengths.shape[1] > 0:  # each step scores the tokens present before it
        before = torch.cat([lengths[:, None], kept_lengths[:, :-1]], dim=1)
        scoring = selection_macs if strategy is True else strategy.selection_macs
        macs = macs + scoring(config, before).sum(1)
    return Cost(macs, full, full / macs)
