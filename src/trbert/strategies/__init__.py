"""Selection strategies: what decides, at each reduction step, which tokens go on.

* `PolicyStrategy`: the learned TR-BERT policy (`KeepPolicy` networks), the default.
* `FixedFractionStrategy`: fixed keep fractions, for speed at known keep rates.
* `EarlyExitStrategy`: token-level early exit by internal classifiers (sequence labelling).
* `AttentionTopKStrategy`, `ThresholdStrategy`: rules on the attention a token receives; the
  thresholds are learned by `trbert.strategies.ltp.learn_thresholds` (Learned Token Pruning).

`for_config` builds the strategy a config's `selection` names; `selection_macs` is what that
selection costs.
"""

from .attention import AttentionRule, AttentionTopKStrategy, ThresholdStrategy, attention_received
from .base import KeepStrategy, StepProposal, Tokens
from .early_exit import EarlyExitStrategy
from .fixed import FixedFractionStrategy
from .policy import KeepPolicy, PolicyStrategy

# The strategy of each `TRBertConfig.selection`.
BY_SELECTION: dict[str, type[KeepStrategy]] = {
    "policy": PolicyStrategy,
    "early_exit": EarlyExitStrategy,
    "attention_topk": AttentionTopKStrategy,
    "attention_threshold": ThresholdStrategy,
}


def for_config(config, layers) -> KeepStrategy:
    """The strategy `config.selection` names; `layers`: the encoder's layers (the attention rules score
    with the layer after each step)."""
    strategy = BY_SELECTION[config.selection]
    return strategy(layers) if issubclass(strategy, AttentionRule) else strategy()


def selection_macs(config, n):
    """What the selection of `config.selection` costs at a step that sees n tokens."""
    return BY_SELECTION[config.selection].selection_macs(config, n)


__all__ = [
    "AttentionRule", "AttentionTopKStrategy", "BY_SELECTION", "EarlyExitStrategy", "FixedFractionStrategy",
    "KeepPolicy", "KeepStrategy", "PolicyStrategy", "StepProposal", "ThresholdStrategy", "Tokens",
    "attention_received", "for_config", "selection_macs",
]
