"""The long-document benchmark: news digests (derived from BBC News: several articles of one split
joined, labelled with the set of topics they contain) of about 1024, 2048 and 4096 tokens.

Ways to read a digest with the 512-position MiniLM fine-tuned on BBC News (the full model of
`trbert run --preset full`):
* truncation: the full model on the first 512 tokens;
* the segment baseline: the full model on every 512-token segment, class probabilities max-pooled;
* TR-BERT's long-input mode: the layers below the first reduction step run on each segment, the
  policy keeps a few tokens of every segment, and the layers above run on the kept tokens of the whole
  document together. Two models:
  - "article model": the TR model that `trbert run --preset full` trained on single articles with
    reduction steps on the embeddings and before layer 3, switched to long input; only its pooler
    and classifier are re-tuned, for multi-label topics, on training digests;
  - "digest-trained": trained from the full model on training digests (policy stage, then the joint
    stage distilling from the segment baseline), then the same head stage; one model per
    `DigestRecipe` (where the reduction steps go, alpha, and whether the joint stage keeps the
    policies frozen).
  A topic is predicted when its sigmoid is at least 0.5.
Each is scored by micro F1 over the topics; TR-BERT against the segment baseline with a 95% bootstrap
interval over digests, FLOPs and wall-clock speed-up (timed side by side in the same run).
"""

from __future__ import annotations

import shlex
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trbert import TRBertForSequenceClassification, evaluation
from trbert.cost import reduction_cost, segmented_layer_macs
from trbert.data import load_digests
from trbert.evaluation import SegmentBaseline
from trbert.tasks.classification import micro_f1, multi_hot
from trbert.training import StageSettings, fit_head, save_atomically, stage_done, train_joint, train_policy

from .bbc import MODEL_NAME, quiet_stage
from .report import diff_cell, kept_cell, markdown_table, provenance, save_png, speedup_cell, update_section


@dataclass(frozen=True)
class DigestRecipe:
    """One digest-trained TR model: its reduction steps, its alpha, and whether its joint stage keeps
    stage 2's policies frozen (distillation alone, with the keep decisions of inference)."""
    reduction_layers: tuple[int, ...] = (1, 3)
    alpha: float = 0.5
    freeze_policies: bool = False

    @property
    def folder(self) -> str:
        return f"layers-{'-'.join(map(str, self.reduction_layers))}/alpha-{self.alpha:g}"

    @property
    def setting(self) -> str:
        return (_describe("digest-trained", self.reduction_layers, self.alpha)
                + (", policies frozen in the joint stage" if self.freeze_policies else ""))


@dataclass
class LongPreset:
    lengths: tuple[int, ...] = (1024, 2048, 4096)
    # Which TR long models to build and measure: "articles" (the article model, below the full model's
    # run folder at `article_model`) and / or "digests" (trained on digests here).
    sources: tuple[str, ...] = ("articles", "digests")
    article_model: str = "layers-0-3/alpha-1/joint"
    train_length: int = 2048
    # Sized for 2 CPU cores (a joint step also runs the segment baseline as its teacher). One policy epoch
    # and four are compared in docs/RESULTS.md, long documents.
    n_train: int = 120
    n_test: int = 100
    # The paper's placement, and a step on the embeddings with the joint stage the BBC News full preset
    # uses for it (policies frozen): with the paper's placement layer 0 reads every token of the document.
    digest_recipes: tuple[DigestRecipe, ...] = (DigestRecipe((1, 3), 0.5),
                                                DigestRecipe((0, 3), 1.0, freeze_policies=True))
    policy: StageSettings = field(default_factory=lambda: StageSettings(
        epochs=4, learning_rate=3e-3, batch_size=2, samples=4, save_steps=20, logging_steps=5))
    joint: StageSettings = field(default_factory=lambda: StageSettings(
        epochs=1, learning_rate=2e-5, batch_size=2, samples=2, save_steps=10, logging_steps=5))
    # The head re-tuned for multi-label topics on the states of the trained model (cheap: one forward
    # pass per digest): training digests, and validation digests to pick the step, in equal parts of
    # each of `head_lengths` tokens (one length only: the head fits that length and no other).
    head_lengths: tuple[int, ...] = (1024, 2048, 4096)
    head_examples: int = 420
    dev_examples: int = 60
    timing_examples: int = 12
    timing_repeats: int = 3
    batch_sizes: tuple[int, ...] = (1, 8)


def _counts(predicted: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    return torch.stack([(predicted & gold).sum(1), predicted.sum(1), gold.sum(1)], dim=1).double()


@torch.inference_mode()
def _predict(model, batches) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    logits = torch.cat([model(**b).logits.float() for b in batches])
    return logits, time.perf_counter() - start


def _batches(tokenizer, texts, max_length, batch_size):
    return [tokenizer(texts[s:s + batch_size], truncation=True, max_length=max_length, padding=True,
                      return_tensors="pt", verbose=False) for s in range(0, len(texts), batch_size)]


def prepare(preset: LongPreset, full_dir: Path, run_dir: Path, seed: int = 0) -> dict[str, Path]:
    """The TR long models of `preset.sources`, built in `run_dir` where missing: {setting: model folder}."""
    models = {}
    if "articles" in preset.sources:
        source = full_dir.parent / preset.article_model
        if not stage_done(source):
            raise FileNotFoundError(f"{source}: no TR model trained on articles; make it with "
                                    f"`trbert run --preset full`, or name another with LongPreset.article_model")
        models[_setting(source, "article model")] = from_articles(source, run_dir / "articles", preset, seed)
    if "digests" in preset.sources:
        for recipe in preset.digest_recipes:
            models[recipe.setting] = train_tr(preset, recipe, full_dir, run_dir, seed)
    return models


def _setting(folder: Path, kind: str) -> str:
    config = TRBertForSequenceClassification.config_class.from_pretrained(folder)
    return _describe(kind, config.reduction_layers, _trained_alpha(folder))


def _describe(kind: str, reduction_layers, alpha: float | None) -> str:
    """A TR long model's setting in the table: what it is, its reduction steps and alpha."""
    return f"{kind}, steps {','.join(map(str, reduction_layers))}" + (f", alpha={alpha:g}" if alpha else "")


def _trained_alpha(folder: Path) -> float | None:
    """The alpha in the name of the folder the model was trained in (`.../alpha-<a>/<stage>`), if any."""
    name = folder.parent.name
    try:
        return float(name.removeprefix("alpha-")) if name.startswith("alpha-") else None
    except ValueError:
        return None


def from_articles(source: Path, folder: Path, preset: LongPreset, seed: int = 0) -> Path:
    """The article model switched to long input (its layers and policies unchanged), then the head stage."""
    if not stage_done(folder / "head"):
        if not stage_done(folder / "long"):
            model = TRBertForSequenceClassification.from_pretrained(source)
            model.config.long_input = True
            model.config.problem_type = "multi_label_classification"
            save_atomically(model, AutoTokenizer.from_pretrained(source), folder / "long")
        retune_head(folder / "long", folder / "head", preset, seed)
    return folder / "head"


def train_tr(preset: LongPreset, recipe: DigestRecipe, full_dir: Path, run_dir: Path, seed: int = 0) -> Path:
    """A digest-trained model: policy and joint stages on training digests, then the head stage."""
    train = load_digests(preset.train_length, "train", n=preset.n_train, seed=seed)
    tokenizer = AutoTokenizer.from_pretrained(full_dir)
    folder = run_dir / recipe.folder
    settings = dict(max_length=preset.train_length, seed=seed, alpha=recipe.alpha)
    if not stage_done(folder / "policy"):
        train_policy(str(full_dir), train, folder / "policy", replace(preset.policy, **settings), task="multi-label",
                     long_input=True, reduction_layers=list(recipe.reduction_layers), keep_rule="expected",
                     problem_type="multi_label_classification")
    if not stage_done(folder / "joint"):
        full = AutoModelForSequenceClassification.from_pretrained(full_dir).eval()
        teacher = SegmentBaseline(full, tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id,
                                  segment_length=full.config.max_position_embeddings)
        train_joint(str(folder / "policy"), teacher, train, folder / "joint", replace(preset.joint, **settings),
                    task="multi-label", freeze_policies=recipe.freeze_policies)
    if not stage_done(folder / "head"):
        retune_head(folder / "joint", folder / "head", preset, seed)
    return folder / "head"


def retune_head(source: Path, out: Path, preset: LongPreset, seed: int = 0) -> Path:
    """The pooler and classifier of the TR long model re-tuned for multi-label topics on the [CLS] state its
    frozen layers and policies give (after attending to the kept tokens of the whole digest): states
    computed once on training digests, the step with the best micro F1 on validation digests kept."""
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = TRBertForSequenceClassification.from_pretrained(source).eval()

    def states(split: str, n: int):
        rows, labels = [], []
        for length in preset.head_lengths:
            digests = load_digests(length, split, n=n // len(preset.head_lengths), seed=seed)
            labels += list(digests["labels"])
            with torch.no_grad():  # (not inference mode: the head trains on these states)
                for batch in _batches(tokenizer, list(digests["text"]), length, 4):
                    rows.append(model.bert(**batch, restore=False).last_hidden_state[:, :1])
        return torch.cat(rows), multi_hot(labels, model.config.num_labels)

    model.requires_grad_(False)
    head = torch.nn.ModuleDict({"pooler": model.bert.pooler, "classifier": model.classifier})
    fit_head(head, lambda s: model.classifier(model.bert.pooler(s)), states("train", preset.head_examples),
             states("validation", preset.dev_examples), multi_label=True, seed=seed)
    model.requires_grad_(True)
    return save_atomically(model, tokenizer, out)


def evaluate(preset: LongPreset, full_dir: Path, tr_models: dict[str, Path], progress: bool = True) -> list[dict]:
    """Records for the segment baseline, truncation and each TR long model ({setting: folder}) at each length."""
    tokenizer = AutoTokenizer.from_pretrained(full_dir)
    full = AutoModelForSequenceClassification.from_pretrained(full_dir).eval()
    limit = full.config.max_position_embeddings
    baseline = SegmentBaseline(full, tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id,
                               segment_length=limit)
    trs = {setting: TRBertForSequenceClassification.from_pretrained(folder).eval()
           for setting, folder in tr_models.items()}
    names = full.config.id2label
    records = []
    for length in preset.lengths:
        test = load_digests(length, "test", n=preset.n_test)
        texts = list(test["text"])
        gold = multi_hot(list(test["labels"]), len(names))
        common = {"model": MODEL_NAME, "data": f"bbc_digests_{length} (derived)", "split": "test",
                  "max_length": length, "n_examples": len(texts), "metric": "micro_f1"}
        batches = _batches(tokenizer, texts, length, max(preset.batch_sizes))
        short = _batches(tokenizer, texts, limit, max(preset.batch_sizes))
        lengths = torch.cat([b["attention_mask"].sum(1) for b in batches])
        seg_pred = torch.sigmoid(_predict(baseline, batches)[0]) >= 0.5
        trunc_pred = torch.softmax(_predict(full, short)[0], -1) >= 0.5
        seg_counts = _counts(seg_pred, gold)
        seg_macs = (full.config.num_hidden_layers * segmented_layer_macs(full.config, lengths, limit)).sum().item()
        trunc_macs = reduction_cost(full.config, lengths.clamp(max=limit), None).macs.sum().item()
        # (method, setting, predictions, FLOPs speed-up, kept fraction per step, model and the length it reads)
        rows = [("segment baseline", f"{limit}-token segments, max-pooled", seg_pred, 1.0, None, baseline, length),
                ("truncation", f"first {limit} tokens", trunc_pred, seg_macs / trunc_macs, None, full, limit)]
        for setting, tr in trs.items():
            with torch.inference_mode():
                kept = torch.cat([tr(**b).kept_lengths for b in batches])
            cost = reduction_cost(tr.config, lengths, kept)
            rows.append(("tr (long input)", setting, torch.sigmoid(_predict(tr, batches)[0]) >= 0.5,
                         seg_macs / cost.macs.sum().item(),
                         [round(k, 4) for k in (kept.double() / lengths[:, None]).mean(0).tolist()], tr, length))
        scored = []
        for method, setting, pred, flops, kept_fraction, _, _ in rows:
            boot = evaluation.paired_bootstrap(_counts(pred, gold), seg_counts, statistic=evaluation.micro_f1_statistic)
            diff, low, high = boot.diff, boot.low, boot.high
            scored.append({**dict.fromkeys(evaluation.RECORD_FIELDS), **common, "method": method, "setting": setting,
                           "score": micro_f1(pred, gold), "f1_diff": diff, "ci_low": low, "ci_high": high,
                           "flops_speedup": round(flops, 4), "kept_fraction": kept_fraction,
                           "mean_tokens": round(lengths.double().mean().item(), 1)})
        # Wall clock: each method against the segment baseline, interleaved, on the first digests; the
        # baseline's own time is the median of its times in those pairs.
        timed = texts[: preset.timing_examples]
        for batch_size in preset.batch_sizes:
            long_batches = _batches(tokenizer, timed, length, batch_size)
            measured, baseline_times = [], []
            for record, (_, _, _, _, _, model, read) in zip(scored[1:], rows[1:]):
                own = long_batches if read == length else _batches(tokenizer, timed, read, batch_size)
                seg_s, seconds, ratio = evaluation.wall_speedup(lambda: _predict(baseline, long_batches),
                                                                lambda: _predict(model, own),
                                                                repeats=preset.timing_repeats)
                baseline_times.append(seg_s)
                measured.append((record, ratio, seconds))
            measured.insert(0, (scored[0], 1.0, statistics.median(baseline_times)))
            for record, ratio, seconds in measured:
                records.append({**record, "batch_size": batch_size, "wall_speedup": round(ratio, 4),
                                "latency_ms": round(seconds / len(timed) * 1000, 2), "timed_examples": len(timed)})
        if progress:
            print(f"length {length}: done", flush=True)
    return records


def table(records: list[dict]) -> str:
    diff = diff_cell("f1_diff")
    return markdown_table(records, [
        ("data", ":--", lambda r: r["data"]), ("method", ":--", lambda r: r["method"]),
        ("setting", ":--", lambda r: r["setting"]), ("batch", "--:", lambda r: str(r["batch_size"])),
        ("mean tokens", "--:", lambda r: f"{r['mean_tokens']:.0f}"), ("micro F1", "--:", lambda r: f"{100 * r['score']:.2f}"),
        ("diff vs segments (95% CI)", ":--", lambda r: "" if r["method"] == "segment baseline" else diff(r)),
        ("kept per step", ":--", kept_cell), ("FLOPs speed-up", "--:", speedup_cell("flops_speedup")),
        ("wall speed-up", "--:", speedup_cell("wall_speedup")), ("ms per digest", "--:", lambda r: f"{r['latency_ms']:.0f}"),
    ])


def plot_latency(records: list[dict], path: str | Path, batch_size: int = 1) -> None:
    """PNG of the wall-clock time per digest against its length, one line per method and setting."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    lines: dict[str, list[dict]] = {}
    for r in records:
        if r["batch_size"] == batch_size:
            lines.setdefault(f"{r['method']} ({r['setting']})", []).append(r)
    fig = Figure(figsize=(6.4, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, points in lines.items():
        points = sorted(points, key=lambda r: r["max_length"])
        ax.plot([r["max_length"] for r in points], [r["latency_ms"] for r in points], marker="o", label=label)
    ax.set_xlabel("digest length (tokens)")
    ax.set_ylabel(f"ms per digest (batch {batch_size})")
    ax.set_title("News digests (derived from BBC News): time against length")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)


def run(full_dir: str = "runs/bbc-full/finetune", run_dir: str = "runs/long", seed: int = 0, report: bool = False,
        progress: bool = True, command: str | None = None, preset: LongPreset | None = None) -> list[dict]:
    preset = preset or LongPreset()
    if not progress:
        preset = replace(preset, policy=quiet_stage(preset.policy), joint=quiet_stage(preset.joint))
    full_dir = Path(full_dir)
    if not stage_done(full_dir):
        raise FileNotFoundError(f"{full_dir}: no fine-tuned BBC News model; make it with "
                                f"`trbert run --preset full` (its finetune stage), or give --full-model")
    torch.manual_seed(seed)
    tr_models = prepare(preset, full_dir, Path(run_dir), seed)
    records = evaluate(preset, full_dir, tr_models, progress)
    command = command or shlex.join(["trbert", "long"])
    text = table(records)
    print(text)
    outputs = [Path(run_dir)] + ([Path("docs/results")] if report else [])
    for folder in outputs:
        folder.mkdir(parents=True, exist_ok=True)
        evaluation.write_results_json(folder / "long_digests.json", "long_digests", command, records)
        plot_latency(records, folder / "long_digests.png")
    if report:
        machine = evaluation.machine()
        section = "\n".join([
            "<!-- long:begin -->",
            "## Long documents: news digests (derived from BBC News)",
            "",
            "News digests: several BBC News test articles joined, labelled with the set of topics they contain "
            f"(a derived set, {preset.n_test} digests per length; `trbert.data.load_digests`). Micro F1 over the five "
            "topics; differences to the segment baseline with a 95% bootstrap interval over digests; FLOPs and "
            "wall-clock speed-up over the segment baseline, timed side by side in the same run on the first "
            f"{preset.timing_examples} digests of each length (median of {preset.timing_repeats} interleaved "
            "repeats). TR-BERT in long-input mode: the *article model* is "
            f"the TR model `trbert run --preset full` trained on single articles (`{preset.article_model}`), switched "
            "to long input, with only its pooler and classifier re-tuned for multi-label topics on "
            f"{preset.head_examples} training digests ({', '.join(map(str, preset.head_lengths))} tokens in equal "
            "parts; the step with the best micro F1 on validation digests kept); each *digest-trained* model was trained "
            f"from the full model on {preset.n_train} training digests of about {preset.train_length} tokens (policy, then "
            "joint distilling from the segment baseline, then the same head stage); its setting names its reduction "
            "steps (step 0: on the embeddings) and alpha.",
            "",
            *provenance(command, machine),
            "",
            text,
            "",
            "![time per digest against length](results/long_digests.png)",
            "<!-- long:end -->",
        ])
        update_section("docs/RESULTS.md", "long", section)
    return records
