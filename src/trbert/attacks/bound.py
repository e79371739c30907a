"""The most a capped model can execute: the defence against slow-down attacks.

With `config.max_keep_ratio = r`, every reduction step keeps at most floor(r n) of an example's n tokens,
more only where the always-kept tokens ([CLS]; with `keep_sep` the separators; with
`keep_first_segment` the first segment) outnumber that; no step keeps more than the one before. The
cost of a layer grows with its tokens, so the cost of those kept lengths bounds what any input of that
length can cost, whatever its words.
"""

import torch

from ..cost import reduction_cost


def cost_bound(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[B] the most multiply-adds `model` (a trbert model, with its config's cap) can execute on inputs of
    these lengths and special tokens, as `trbert.evaluation.model_macs` counts them."""
    config = model.config
    mask = attention_mask.bool()
    lengths = mask.sum(1)
    forced = torch.ones_like(lengths)
    is_sep = (input_ids == config.sep_token_id) & mask
    if config.keep_sep:
        forced = forced + is_sep[:, 1:].sum(1)
    if config.keep_first_segment:
        n = input_ids.shape[1]
        first_sep = torch.where(is_sep, torch.arange(n), n).min(1).values.clamp(max=n - 1)
        upto = torch.arange(n)[None, :] <= first_sep[:, None]
        forced = forced + (upto & mask)[:, 1:].sum(1)
        if config.keep_sep:  # separators inside the first segment were counted twice
            forced = forced - (is_sep & upto)[:, 1:].sum(1)
    budget = torch.floor(lengths * config.max_keep_ratio + 1e-6).long()
    kept = torch.minimum(lengths, torch.maximum(budget, forced))
    steps = len(config.reduction_layers)
    strategy = model.base_model.encoder.strategy
    return reduction_cost(config, lengths, kept[:, None].expand(-1, steps), strategy=strategy).macs
