"""Attacks on a token-reducing classifier: on its cost (slow-down) and on its prediction (word
substitutions), and what bounds the first (`max_keep_ratio`, `cost_bound`).

* `victim`: what an attack sees of a model (`Victim.measure`: predictions, kept lengths, multiply-adds)
  and the word-level edits it makes.
* `slowdown`: `whitebox` (gradient of the keep probabilities), `blackbox` (greedy, sees only the cost)
  and `append` (text appended up to the maximum length).
* `substitution`: WordNet-synonym substitutions against the prediction, most important words first.
* `cost_bound`: the most multiply-adds a capped model can execute on an input of a given length.

`trbert attack` (`trbert.benchmarks.attack`) runs them on test sets and reports.
"""

from .bound import cost_bound
from .slowdown import SlowdownResult, append, blackbox, whitebox
from .substitution import SubstitutionResult
from .substitution import attack as substitution_attack
from .victim import Measured, Victim, edit_budget

__all__ = ["Measured", "SlowdownResult", "SubstitutionResult", "Victim", "append", "blackbox", "cost_bound",
           "edit_budget", "substitution_attack", "whitebox"]
