"""Training to an accuracy budget: from one fine-tuned model (the full model), a small sweep of alphas,
each trained through the policy and joint stages; every candidate is scored on the validation split,
and the fastest (most FLOPs saved) whose score is within `max_drop` points of the full model's is kept.

The candidates share the fine-tune and the teacher's logits (computed once per process); finished
stages are found on disk and reused, so a second call with another budget only scores again.
"""

from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import BudgetError
from .io import write_json

DEFAULT_ALPHAS = (0.2, 0.5, 1.0, 2.0)
CHOICE_FILE = "trbert-budget.json"  # in the kept model's folder and in the sweep's folder


@dataclass
class Candidate:
    alpha: float
    folder: str
    score: float  # on the validation split, in [0, 1]
    kept_fraction: list[float] | None  # the fraction of an example's tokens each reduction step keeps (mean)
    flops_speedup: float

    def drop(self, full_score: float) -> float:
        """Points below the full model (negative: above it)."""
        return 100 * (full_score - self.score)


@dataclass
class BudgetChoice:
    """What `train_to_budget` found: the full model's validation score, every candidate, the one kept."""

    full_score: float
    candidates: list[Candidate]
    chosen: Candidate


def choose(candidates: list[Candidate], full_score: float, max_drop: float) -> Candidate:
    """The candidate with the largest FLOPs speed-up among those within `max_drop` points of
    `full_score` (ties: the higher score). None within it: a BudgetError naming the best candidate."""
    if not candidates:
        raise BudgetError("no candidate models to choose from")
    within = [c for c in candidates if c.drop(full_score) <= max_drop + 1e-9]
    if not within:
        best = max(candidates, key=lambda c: (c.score, c.flops_speedup))
        raise BudgetError(
            f"no candidate is within {max_drop:g} points of the full model's validation score "
            f"({100 * full_score:.2f}%): the best, alpha={best.alpha:g} ({best.folder}), scores "
            f"{100 * best.score:.2f}% ({best.drop(full_score):.2f} points below) at {best.flops_speedup:.2f}x fewer "
            "FLOPs. Allow a larger drop, or add smaller alphas (they keep more tokens).")
    return max(within, key=lambda c: (c.flops_speedup, c.score))


def candidates_table(candidates: list[Candidate], full_score: float, chosen: Candidate | None = None,
                     max_drop: float | None = None) -> str:
    """The candidates as a plain-text table: validation score, points below the full model, tokens kept,
    FLOPs speed-up; the chosen one marked."""
    rows = [("alpha", "validation", "drop (points)", "kept per step", "FLOPs speed-up", "")]
    rows.append(("full", f"{100 * full_score:.2f}%", "", "100%", "1.00x", ""))
    for c in sorted(candidates, key=lambda c: c.alpha):
        mark = "kept" if c is chosen else ("over budget" if max_drop is not None and c.drop(full_score) > max_drop + 1e-9
                                           else "")
        kept = "" if c.kept_fraction is None else " / ".join(f"{100 * k:.0f}%" for k in c.kept_fraction)
        rows.append((f"{c.alpha:g}", f"{100 * c.score:.2f}%", f"{c.drop(full_score):+.2f}", kept,
                     f"{c.flops_speedup:.2f}x", mark))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def score_candidates(full_dir: str, folders: dict[float, str], validation, max_length: int, batch_size: int = 32,
                     progress: bool = True) -> tuple[float, list[Candidate]]:
    """The full model's validation accuracy and each TR model's (`folders`: {alpha: folder}), with its
    kept fraction and FLOPs speed-up. `validation`: a dataset with ``text`` and ``label``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from . import evaluation
    from .modeling import TRBertForSequenceClassification
    from .tasks.classification import accuracy

    texts, labels = list(validation["text"]), list(validation["label"])
    tokenizer = AutoTokenizer.from_pretrained(full_dir)
    full = AutoModelForSequenceClassification.from_pretrained(full_dir).eval()
    full_pred = evaluation.predict_batches(full, tokenizer, texts, max_length, batch_size, progress=progress)
    candidates = []
    for alpha, folder in folders.items():
        model = TRBertForSequenceClassification.from_pretrained(folder).eval()
        result = evaluation.evaluate_classifier(model, full, tokenizer, texts, labels, max_length, batch_size,
                                                timing_repeats=0, progress=progress, full_predictions=full_pred)
        candidates.append(Candidate(alpha, str(folder), result["accuracy"], result["kept_fraction"],
                                    result["flops_speedup"]))
    return accuracy(full_pred.pred, labels), candidates


def train_to_budget(full_dir: str, train, validation, out_dir: str, max_drop: float, policy, joint,
                    alphas=DEFAULT_ALPHAS, freeze_policies: bool = True, progress: bool = True, say=print,
                    **policy_overrides) -> BudgetChoice:
    """Train the policy and joint stages for each alpha from the fine-tuned `full_dir` into
    OUT/alpha-A/{policy,joint}, score them on `validation` and keep one (`choose`); returns the scores
    and the choice.

    `policy`, `joint`: the stages' `trbert.training.StageSettings` (their alpha is set per candidate);
    `policy_overrides`: config values of the policy stage (`reduction_layers`, by default the recipe's,
    `trbert.configuration.recipe_reduction_layers`; `keep_rule`, ...). `freeze_policies`: the joint stage
    keeps the policies frozen (the recipe's default for classification) or tunes them too (the paper's).
    Writes OUT/trbert-budget.json (every candidate and the choice) and the same into the kept model's
    folder; raises BudgetError when no candidate is within the budget (the file is written then too)."""
    from dataclasses import replace

    from .training import train_joint, train_policy

    if not max_drop >= 0:
        raise BudgetError(f"max_drop={max_drop}: the accuracy budget is a number of points, at least 0")
    alphas = sorted({float(a) for a in alphas})
    if not alphas or any(a < 0 for a in alphas):
        raise BudgetError(f"alphas={alphas}: give one or more length-penalty weights, each at least 0")
    out = Path(out_dir)
    if "reduction_layers" not in policy_overrides:
        from transformers import AutoConfig

        from .configuration import recipe_reduction_layers

        policy_overrides["reduction_layers"] = recipe_reduction_layers(AutoConfig.from_pretrained(full_dir).num_hidden_layers)
    folders = {}
    for alpha in alphas:
        folder = out / f"alpha-{alpha:g}"
        say(f"candidate alpha={alpha:g}: policy and joint stages into {folder}")
        train_policy(str(full_dir), train, folder / "policy", replace(policy, alpha=alpha), **policy_overrides)
        train_joint(str(folder / "policy"), str(full_dir), train, folder / "joint", replace(joint, alpha=alpha),
                    freeze_policies=freeze_policies)
        folders[alpha] = str(folder / "joint")
    say(f"scoring {len(folders)} candidate(s) and the full model on {len(validation)} validation examples")
    full_score, candidates = score_candidates(str(full_dir), folders, validation, joint.max_length, progress=progress)
    record = {"max_drop": max_drop, "full_model": str(full_dir), "full_score": full_score,
              "validation_examples": len(validation), "candidates": [asdict(c) for c in candidates]}
    try:
        chosen = choose(candidates, full_score, max_drop)
    except BudgetError:
        say(candidates_table(candidates, full_score, max_drop=max_drop))
        write_json(out / CHOICE_FILE, {**record, "chosen": None})
        raise
    say(candidates_table(candidates, full_score, chosen, max_drop))
    record["chosen"] = asdict(chosen)
    write_json(out / CHOICE_FILE, record)
    write_json(Path(chosen.folder) / CHOICE_FILE, record)
    return BudgetChoice(full_score, candidates, chosen)
