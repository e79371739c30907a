"""The sequence-labelling benchmark: WNUT-16 entity F1 and speed of the full model, the TR-BERT policy
(with restore) and token-level early exit (both variants: skipped tokens removed outright, or kept as
keys and values), with the embedded MiniLM, on the fixed test split.

Stages (each skipped when its folder is complete, resumed from its last checkpoint otherwise):
fine-tune -> for each alpha: policy, joint -> exits (internal classifiers, backbone frozen) ->
self-sampling fine-tuning. Then every model is evaluated against the full model: entity F1 with a
95% bootstrap interval over sentences, tokens kept per step, FLOPs speed-up, and the wall-clock
speed-up at batch 1 and 32, timed side by side with the full model in the same run.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

from trbert import TRBertForTokenClassification, evaluation
from trbert.configuration import default_backbone
from trbert.data import load_wnut
from trbert.evaluation import evaluate_tagger
from trbert.training import StageSettings, finetune, stage_done, train_exits, train_joint, train_policy

from . import bbc as main_job
from .bbc import MODEL_NAME
from .report import plot_tradeoff, provenance, update_section


@dataclass
class WnutPreset:
    max_length: int = 64  # WNUT tweets: at most 64 sub-word tokens for all but a handful
    finetune: StageSettings = field(default_factory=lambda: StageSettings(epochs=5, learning_rate=1e-4, batch_size=16))
    policy: StageSettings = field(default_factory=lambda: StageSettings(
        epochs=2, learning_rate=3e-3, batch_size=16, samples=8))
    joint: StageSettings = field(default_factory=lambda: StageSettings(
        epochs=2, learning_rate=3e-5, batch_size=16, samples=2))
    exits: StageSettings = field(default_factory=lambda: StageSettings(epochs=3, learning_rate=2e-3, batch_size=16))
    self_sampling: StageSettings = field(default_factory=lambda: StageSettings(
        epochs=2, learning_rate=3e-5, batch_size=16))
    alphas: list[float] = field(default_factory=lambda: [0.2, 2.0])
    thresholds: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2])
    exit_window: int = 1
    batch_sizes: tuple[int, ...] = (1, 32)


def train_models(preset: WnutPreset, run_dir: Path, backbone: str, seed: int = 0) -> dict:
    settings = main_job.stage_settings
    run_dir = Path(run_dir)
    wnut = load_wnut(seed=0)
    train, names = wnut["train"], wnut["train"].features["ner_tags"].feature.names
    full = run_dir / "finetune"
    if not stage_done(full):
        finetune(backbone, train, full, settings(preset.finetune, preset, seed), names, task="token-classification")
    tr = {}
    for alpha in preset.alphas:
        folder = run_dir / f"alpha-{alpha:g}"
        if not stage_done(folder / "policy"):
            train_policy(str(full), train, folder / "policy", settings(preset.policy, preset, seed, alpha=alpha),
                         task="token-classification", keep_rule="expected")
        if not stage_done(folder / "joint"):
            train_joint(str(folder / "policy"), str(full), train, folder / "joint",
                        settings(preset.joint, preset, seed, alpha=alpha), task="token-classification")
        tr[alpha] = folder / "joint"
    if not stage_done(run_dir / "exits"):
        train_exits(str(full), train, run_dir / "exits", settings(preset.exits, preset, seed),
                    exit_window=preset.exit_window)
    if not stage_done(run_dir / "self-sampling"):
        train_exits(str(run_dir / "exits"), train, run_dir / "self-sampling",
                    settings(preset.self_sampling, preset, seed), self_sampling=True)
    return {"full": full, "tr": tr, "early_exit": run_dir / "exits", "self_sampling": run_dir / "self-sampling"}


def evaluate_models(preset: WnutPreset, folders: dict, progress: bool = True) -> list[dict]:
    test = load_wnut(seed=0)["test"]
    tokenizer = AutoTokenizer.from_pretrained(folders["full"])
    full = AutoModelForTokenClassification.from_pretrained(folders["full"]).eval()
    common = {"model": MODEL_NAME, "data": "wnut16", "split": "test", "max_length": preset.max_length}
    candidates = [("tr", f"alpha={alpha:g}", lambda f=folder: TRBertForTokenClassification.from_pretrained(f))
                  for alpha, folder in folders["tr"].items()]
    # Early exit with the internal classifiers alone (backbone frozen), in both variants; and after the
    # self-sampling fine-tuning, tokens that left removed.
    variants = [("early exit", "early_exit", False), ("early exit (skipped as keys)", "early_exit", True),
                ("early exit + self-sampling", "self_sampling", False)]
    for method, folder, as_keys in variants:
        for threshold in preset.thresholds:
            candidates.append((method, f"threshold={threshold:g}", lambda t=threshold, k=as_keys, f=folders[folder]: (
                TRBertForTokenClassification.from_pretrained(f, exit_threshold=t, skipped_as_keys=k))))
    records = []
    for batch_size in preset.batch_sizes:
        first = True
        for method, setting, load in candidates:
            model = load().eval()
            result = evaluate_tagger(model, full, tokenizer, test, preset.max_length, batch_size,
                                     timing_repeats=1, progress=progress)
            if first:
                records.append(evaluation.results_record(
                    {"f1": result["full_f1"], "flops_speedup": 1.0, "wall_speedup": 1.0, "kept_fraction": None,
                     "latency_ms": result["full_latency_ms"], "n_examples": result["n_examples"],
                     "batch_size": batch_size}, metric="entity_f1", key="f1", method="full", setting="fine-tuned",
                    **common))
                first = False
            fields = {k: v for k, v in result.items() if k != "tags"}
            records.append(evaluation.results_record(fields, metric="entity_f1", key="f1", method=method,
                                                     setting=setting, reduction_layers=model.config.reduction_layers,
                                                     **common))
    return records


def table(records: list[dict]) -> str:
    return main_job.table(records, score="entity F1", diff="f1_diff")


def run(run_dir: str = "runs/wnut", backbone: str | None = None, seed: int = 0, report: bool = False,
        progress: bool = True, command: str | None = None) -> list[dict]:
    preset = WnutPreset()
    backbone = backbone or default_backbone()
    torch.manual_seed(seed)
    folders = train_models(preset, Path(run_dir), backbone, seed)
    records = evaluate_models(preset, folders, progress)
    command = command or shlex.join(["trbert", "wnut"])
    title = f"WNUT-16 test, {MODEL_NAME}, max length {preset.max_length}"
    outputs = [(Path(run_dir) / "results.json", Path(run_dir) / "tradeoff.png")]
    if report:
        outputs.append((Path("docs/results/wnut.json"), Path("docs/results/wnut.png")))
    for json_path, png_path in outputs:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        evaluation.write_results_json(json_path, "wnut", command, records)
        plot_tradeoff([r for r in records if r["batch_size"] == max(preset.batch_sizes)], png_path, title,
                      y_label="entity F1")
    text = table(records)
    print(text)
    if report:
        machine = evaluation.machine()
        section = "\n".join([
            "<!-- wnut:begin -->",
            "## WNUT-16: TR-BERT and token-level early exit (sequence labelling)",
            "",
            f"{title}. Entity F1 (seqeval, exact span and type) on all {records[0]['n_examples']} test sentences; the "
            "difference to the full model with a 95% bootstrap interval over sentences (10,000 resamples); FLOPs "
            "speed-up from the multiply-adds executed; wall-clock speed-up timed side by side with the full model in "
            "the same run, at each batch size. TR: reduction before layers 1 and 3, skipped tokens restored for the "
            f"tagger. Early exit: an internal classifier before each of layers 1-5 (trained with the rest frozen), "
            f"window {preset.exit_window} on each side; a token that leaves is labelled by the classifier where it "
            "left; 'skipped as keys' is the original method (tokens that left still serve as keys and values), the "
            "other removes them outright; '+ self-sampling': after the self-sampling fine-tuning of every parameter.",
            "",
            *provenance(command, machine),
            "",
            text,
            "",
            "![entity F1 against FLOPs and wall-clock speed-up](results/wnut.png)",
            "<!-- wnut:end -->",
        ])
        update_section("docs/RESULTS.md", "wnut", section)
    return records
