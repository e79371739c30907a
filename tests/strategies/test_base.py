"""What every strategy shares: the strategy a config's selection names, what each selection costs, budgets."""

import pytest
import torch
from builders import tiny_config

import trbert
from trbert.strategies import BY_SELECTION, for_config, selection_macs
from trbert.strategies.base import Tokens, budget_of

SELECTIONS = {
    "policy": {},
    "early_exit": {"num_labels": 5},
    "attention_topk": {"keep_fractions": [0.5, 0.25]},
    "attention_threshold": {"score_thresholds": [0.1, 0.2]},
}


@pytest.mark.parametrize("selection", list(SELECTIONS))
def test_a_model_runs_the_strategy_its_config_names(selection):
    config = tiny_config(selection=selection, **SELECTIONS[selection])
    model = trbert.TRBertModel(config)
    assert type(model.encoder.strategy) is BY_SELECTION[selection] is type(for_config(config, model.encoder.layer))


@pytest.mark.parametrize("selection", list(SELECTIONS))
def test_selection_cost_is_the_strategys_own(selection):
    config = tiny_config(selection=selection, **SELECTIONS[selection])
    n = torch.tensor([10, 40])
    d, p = config.hidden_size, config.policy_hidden_size
    expected = {"policy": n * (d * p + p), "early_exit": n * d * config.num_labels,
                "attention_topk": 2 * n * d * d + n * n * d, "attention_threshold": 2 * n * d * d + n * n * d}
    assert selection_macs(config, n).tolist() == expected[selection].double().tolist()
    assert trbert.FixedFractionStrategy([0.5]).selection_macs(config, n).tolist() == [0.0, 0.0]


def test_budget_rounds_each_examples_share_and_keeps_at_least_one():
    tokens = Tokens(torch.zeros(3, 2), torch.tensor([0, 1, 2]), torch.zeros(3, dtype=torch.long),
                    torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=torch.long), torch.tensor([10, 3, 1]))
    assert budget_of(tokens, 0.25).tolist() == [2, 1, 1]  # round(2.5) = 2, round(0.75) = 1, at least 1
