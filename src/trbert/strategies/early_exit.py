"""Token-level early exit (for sequence labelling): an internal classifier per step labels each token;
a token leaves once the predictions around it are confident, labelled where it left."""

import math

import torch
import torch.nn.functional as F

from .base import KeepStrategy, StepProposal, Tokens


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

    @staticmethod
    def selection_macs(config, n):
        """The internal classifier on n tokens: n d C (C labels)."""
        return n.to(torch.float64) * config.hidden_size * config.num_labels


def window_max(values: torch.Tensor, tokens: Tokens, window: int) -> torch.Tensor:
    """[T] the largest of `values` over each token's neighbours within `window` positions, in its own
    example; tokens no longer present count as 0."""
    if window == 0:
        return values
    grid = values.new_zeros(len(tokens.counts), int(tokens.position.max()) + 1)
    grid[tokens.example, tokens.position] = values
    pooled = F.max_pool1d(grid[:, None], kernel_size=2 * window + 1, stride=1, padding=window)[:, 0]
    return pooled[tokens.example, tokens.position]
