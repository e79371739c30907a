"""Training to an accuracy budget: which candidate is kept, the message when none is, the table."""

import pytest

from trbert import BudgetError
from trbert.budget import Candidate, candidates_table, choose

FULL = 0.90


def candidate(alpha, score, speedup):
    return Candidate(alpha, f"runs/alpha-{alpha:g}/joint", score, [0.5, 0.25], speedup)


CANDIDATES = [candidate(0.2, 0.899, 2.0), candidate(0.5, 0.893, 3.1), candidate(1.0, 0.885, 4.4),
              candidate(2.0, 0.86, 7.9)]


@pytest.mark.parametrize("max_drop,alpha", [(0.1, 0.2), (0.3, 0.2), (0.7, 0.5), (1.0, 0.5), (1.5, 1.0), (4.0, 2.0)])
def test_the_fastest_within_the_budget_is_kept(max_drop, alpha):
    assert choose(CANDIDATES, FULL, max_drop).alpha == alpha


def test_a_candidate_above_the_full_model_is_within_any_budget():
    above = candidate(0.1, 0.91, 1.5)
    assert choose([above, candidate(1.0, 0.5, 9.0)], FULL, 0).alpha == 0.1


def test_ties_in_speed_go_to_the_better_score():
    assert choose([candidate(1.0, 0.88, 4.0), candidate(2.0, 0.89, 4.0)], FULL, 3).alpha == 2.0


def test_none_within_the_budget_names_the_best_candidate():
    with pytest.raises(BudgetError) as error:
        choose(CANDIDATES[1:], FULL, 0.5)
    message = str(error.value)
    assert "no candidate is within 0.5 points of the full model's validation score (90.00%)" in message
    assert "the best, alpha=0.5 (runs/alpha-0.5/joint), scores 89.30% (0.70 points below) at 3.10x" in message
    with pytest.raises(BudgetError, match="no candidate models"):
        choose([], FULL, 1)


def test_the_table_marks_the_kept_and_the_over_budget():
    kept = choose(CANDIDATES, FULL, 1.0)
    lines = candidates_table(CANDIDATES, FULL, kept, 1.0).splitlines()
    assert lines[0].split() == ["alpha", "validation", "drop", "(points)", "kept", "per", "step", "FLOPs", "speed-up"]
    assert lines[1].split() == ["full", "90.00%", "100%", "1.00x"]
    assert lines[3].split() == ["0.5", "89.30%", "+0.70", "50%", "/", "25%", "3.10x", "kept"]
    assert lines[4].endswith("over budget") and lines[5].endswith("over budget")
    assert lines[2].split()[-1] == "2.00x"  # within, not kept: unmarked
