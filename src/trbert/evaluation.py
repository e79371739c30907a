"""Evaluation of sequence classifiers: accuracy against the full model, with a paired-bootstrap
confidence interval, the multiply-adds executed, and wall-clock speed measured side by side.

Works for trbert models (their outputs carry `kept_lengths`) and for plain transformers models
(the full model: every layer runs on every non-padding token). Costs are counted per example on
its real (unpadded) length, so the FLOP speed-up does not depend on the batch size.

Typical use (what `trbert eval` does):

    full = predict_batches(full_model, tokenizer, texts, max_length, batch_size)
    tr = evaluate_classifier(model, full_model, tokenizer, texts, labels, max_length, batch_size,
                             full_predictions=full)
    truncated = truncation_baseline(full_model, tokenizer, texts, labels, [64, 128], full, batch_size)
    records = [results_record(r, model=..., data=..., split=...) for r in [tr, *truncated]]
    write_results_json(path, benchmark, command, records)
    plot_tradeoff(records, png_path, title)
"""

import datetime
import os
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .cost import reduction_cost
from .inputs import _as_list, encode
from .reporting import machine, save_png, versions, write_json

# Fields every record of a results file has (None where they do not apply).
RECORD_FIELDS = (
    "method", "setting", "model", "data", "split", "n_examples", "max_length", "batch_size", "metric",
    "score", "kept_fraction", "flops_speedup", "wall_speedup", "latency_ms", "throughput_per_s", "peak_mem_mb",
)
X_LABELS = {
    "flops_speedup": "speed-up over the full model (FLOPs)",
    "wall_speedup": "speed-up over the full model (wall clock)",
}
_BOOTSTRAP_CHUNK = 1 << 22  # index elements drawn at once by the bootstrap (32 MiB of int64)


@dataclass
class Predictions:
    """A model's outputs on a list of texts, in the order given."""

    logits: torch.Tensor  # [N, C]
    pred: torch.Tensor  # [N] long: the arg-max class
    lengths: torch.Tensor  # [N] non-padding tokens of each example
    kept_lengths: torch.Tensor | None  # [N, steps] tokens kept by each reduction step; None for a plain model
    macs: torch.Tensor  # [N] multiply-adds executed per example (float64)
    seconds: float  # wall time of the forward passes (tokenization excluded)

    def __len__(self) -> int:
        return len(self.pred)


@dataclass
class BootstrapResult:
    diff: float  # accuracy of system a minus accuracy of system b
    low: float  # lower end of the confidence interval of diff
    high: float  # upper end


# ---------------------------------------------------------------------------- running a model
def encoded_batches(tokenizer, texts: Sequence[str], max_length: int, batch_size: int) -> Iterable:
    """The texts tokenized batch by batch (`trbert.encode`), in the order given."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")
    for start in range(0, len(texts), batch_size):
        yield encode(tokenizer, list(texts[start : start + batch_size]), max_length=max_length)


@contextmanager
def _eval_mode(model):
    """Evaluation mode (no dropout, no sampling) for the duration; the model's mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield model
    finally:
        model.train(was_training)


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_macs(model, lengths: torch.Tensor, kept_lengths: torch.Tensor | None) -> torch.Tensor:
    """[N] multiply-adds a model executed on examples of the given lengths (see `trbert.cost`)."""
    # A plain model (no kept_lengths) runs every layer on every real token: reduction_cost's full cost.
    # Otherwise the model's current strategy says what its selection cost.
    strategy = False if kept_lengths is None else model.base_model.encoder.strategy
    return reduction_cost(model.config, lengths, kept_lengths, policy=strategy).macs


def predict_encoded(model, batches: Iterable, total: int | None = None, progress: bool = False) -> Predictions:
    """Run a classifier on already tokenized batches (e.g. from `encoded_batches`)."""
    device = _device(model)
    logits, lengths, kept = [], [], []
    seconds = 0.0
    with _eval_mode(model), tqdm(total=total, desc="predicting", unit="text", disable=not progress) as bar:
        for batch in batches:
            batch = batch.to(device)
            start = time.perf_counter()
            out = model(**batch)
            _synchronize(device)
            seconds += time.perf_counter() - start
            logits.append(out.logits.float().cpu())
            lengths.append(batch["attention_mask"].sum(1).cpu())
            if getattr(out, "kept_lengths", None) is not None:
                kept.append(out.kept_lengths.cpu())
            bar.update(len(lengths[-1]))
    if not logits:
        raise ValueError("there are no batches to predict")
    logits, lengths = torch.cat(logits), torch.cat(lengths)
    kept = torch.cat(kept) if kept else None
    return Predictions(logits, logits.argmax(-1), lengths, kept, model_macs(model, lengths, kept), seconds)


def predict_batches(
    model, tokenizer, texts: list[str], max_length: int, batch_size: int, progress: bool = True
) -> Predictions:
    """Classify texts in batches of `batch_size`, in the order given, truncated to `max_length` tokens."""
    texts = _as_list(texts, "texts")  # a bad text is reported by its index in the whole list
    batches = encoded_batches(tokenizer, texts, max_length, batch_size)
    return predict_encoded(model, batches, total=len(texts), progress=progress)


def _forward_pass(model, batches: Sequence) -> None:
    """One pass over the batches, forward only, outputs discarded: what `wall_speedup` times."""
    device = _device(model)
    with _eval_mode(model):
        for batch in batches:
            model(**batch.to(device))
        _synchronize(device)


# ---------------------------------------------------------------------------- statistics
def _labels(labels, n: int) -> torch.Tensor:
    labels = torch.as_tensor(labels, dtype=torch.long).cpu()
    if labels.shape != (n,):
        raise ValueError(f"got {n} texts but labels of shape {tuple(labels.shape)}: give one label per text")
    return labels


def accuracy(pred, labels) -> float:
    """Fraction of predictions equal to the labels."""
    pred, labels = torch.as_tensor(pred).cpu(), torch.as_tensor(labels).cpu()
    if pred.shape != labels.shape or pred.numel() == 0:
        raise ValueError(f"pred {tuple(pred.shape)} and labels {tuple(labels.shape)} must be the same non-empty shape")
    return (pred == labels).double().mean().item()


def paired_bootstrap(
    correct_a: torch.Tensor,
    correct_b: torch.Tensor,
    n_resamples: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapResult:
    """Accuracy of a minus accuracy of b, with a percentile confidence interval. `correct_*`: per
    example 1/0 (or True/False), or any per-example score in [0, 1] such as a question's F1.

    Each resample draws N test examples with replacement, the same ones for both systems (paired),
    and takes the difference in accuracy on them. Deterministic for a seed.
    """
    a, b = (torch.as_tensor(c).detach().cpu().double() for c in (correct_a, correct_b))
    if a.dim() != 1 or a.shape != b.shape or len(a) == 0:
        raise ValueError(f"correct_a {tuple(a.shape)} and correct_b {tuple(b.shape)} must be equal, non-empty vectors")
    if n_resamples < 1 or not 0.0 < confidence < 1.0:
        raise ValueError(f"need n_resamples >= 1 (got {n_resamples}) and confidence in (0, 1) (got {confidence})")
    delta = a - b  # per example: 1 only a right, -1 only b right, 0 alike
    n = len(delta)
    gen = torch.Generator().manual_seed(seed)
    rows = max(1, _BOOTSTRAP_CHUNK // n)
    diffs = []
    for start in range(0, n_resamples, rows):
        index = torch.randint(n, (min(rows, n_resamples - start), n), generator=gen)
        diffs.append(delta[index].mean(1))
    tail = (1.0 - confidence) / 2
    low, high = torch.quantile(torch.cat(diffs), torch.tensor([tail, 1.0 - tail], dtype=torch.float64)).tolist()
    return BootstrapResult(delta.mean().item(), low, high)


def _comparison(predictions: Predictions, full: Predictions, labels: torch.Tensor) -> dict:
    """Accuracy of a system and of the full model on the same examples, and the FLOP speed-up."""
    if len(predictions) != len(full) or len(full) != len(labels):
        raise ValueError(f"{len(predictions)} predictions, {len(full)} full-model predictions and {len(labels)} labels")
    boot = paired_bootstrap(predictions.pred == labels, full.pred == labels)
    return {
        "accuracy": accuracy(predictions.pred, labels),
        "full_accuracy": accuracy(full.pred, labels),
        "accuracy_diff": boot.diff,
        "ci_low": boot.low,
        "ci_high": boot.high,
        "flops_speedup": round(float(full.macs.sum() / predictions.macs.sum()), 4),
    }


def kept_fraction(predictions: Predictions) -> list[float] | None:
    """Mean over examples of the fraction of its tokens each reduction step kept (None: no reduction)."""
    if predictions.kept_lengths is None:
        return None
    fraction = predictions.kept_lengths.double() / predictions.lengths[:, None]
    return [round(f, 4) for f in fraction.mean(0).tolist()]


def mean_reward(predictions: Predictions, labels, alpha: float) -> dict:
    """The policy stage's reward averaged over held-out examples, with the keep rule of inference:
    -cross-entropy - alpha * the mean over reduction steps of the kept fraction. Returns it with its
    parts ("reward", "loss", "kept", "accuracy")."""
    labels = _labels(labels, len(predictions))
    loss = torch.nn.functional.cross_entropy(predictions.logits.float(), labels).item()
    kept = 1.0
    if predictions.kept_lengths is not None:
        kept = (predictions.kept_lengths.double() / predictions.lengths[:, None]).mean().item()
    return {"reward": -loss - alpha * kept, "loss": loss, "kept": kept, "accuracy": accuracy(predictions.pred, labels)}


# ---------------------------------------------------------------------------- timing
def spread(total: int, n: int) -> list[int]:
    """`n` indices spread evenly over range(total), all of them when n >= total: a subset to time that
    samples every part of an ordered split (the BBC test split is grouped by topic, so its first
    articles are all business)."""
    if n >= total:
        return list(range(total))
    return [i * total // n for i in range(n)]


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def wall_speedup(
    full_fn: Callable[[], object], tr_fn: Callable[[], object], repeats: int = 3
) -> tuple[float, float, float]:
    """Time two zero-argument callables interleaved (full, tr, full, tr, ...) after one warm-up call
    each, so that drift of the machine hits both alike. Returns the median seconds of each and
    full / tr."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats} must be at least 1")
    full_fn()
    tr_fn()
    full_times, tr_times = [], []
    for _ in range(repeats):
        full_times.append(_timed(full_fn))
        tr_times.append(_timed(tr_fn))
    full, tr = statistics.median(full_times), statistics.median(tr_times)
    return full, tr, full / tr


# ---------------------------------------------------------------------------- evaluations
def evaluate_classifier(
    model,
    full_model,
    tokenizer,
    texts: list[str],
    labels,
    max_length: int,
    batch_size: int,
    timing_repeats: int = 1,
    progress: bool = True,
    full_predictions: Predictions | None = None,
) -> dict:
    """Accuracy, cost and speed of `model` against `full_model` on the same texts and batches.

    `full_predictions`: the full model's `predict_batches` on the same texts and `max_length`, if
    already computed (to share it with `truncation_baseline`). Wall-clock speed: a forward pass
    over all batches by each model, interleaved, `timing_repeats` times after a warm-up pass each
    (0: not timed; the wall-clock fields are None). Tokenization is not timed.
    """
    texts = _as_list(texts, "texts")
    labels = _labels(labels, len(texts))
    n = len(texts)
    batches = list(encoded_batches(tokenizer, texts, max_length, batch_size))
    predictions = predict_encoded(model, batches, total=n, progress=progress)
    full = full_predictions
    if full is None:
        full = predict_encoded(full_model, batches, total=n, progress=progress)
    result = {
        **_comparison(predictions, full, labels),
        "kept_fraction": kept_fraction(predictions),
        "n_examples": n,
        "batch_size": batch_size,
        "max_length": max_length,
    }
    result.update(timed_side_by_side(model, full_model, batches, n, timing_repeats))
    return result


def timed_side_by_side(model, full_model, batches: Sequence, n: int, repeats: int) -> dict:
    """Wall-clock fields of a result: a forward pass over `batches` (n examples) by each model,
    interleaved, `repeats` times after a warm-up pass each; all None when `repeats` is 0."""
    if repeats <= 0:
        return {"wall_speedup": None, "latency_ms": None, "throughput_per_s": None, "full_latency_ms": None}
    full_s, tr_s, ratio = wall_speedup(
        lambda: _forward_pass(full_model, batches), lambda: _forward_pass(model, batches), repeats
    )
    return {"wall_speedup": round(ratio, 4), "latency_ms": round(tr_s / n * 1000, 3),
            "throughput_per_s": round(n / tr_s, 2), "full_latency_ms": round(full_s / n * 1000, 3)}


def truncation_baseline(
    full_model,
    tokenizer,
    texts: list[str],
    labels,
    keep_tokens: list[int],
    full_predictions: Predictions,
    batch_size: int,
    progress: bool = True,
) -> list[dict]:
    """The rival of token reduction: keep only the first k tokens of each text and run the full model.

    One result per k, against `full_predictions` (the full model at its full length). The kept
    fraction is that of the full-length input's tokens. Not timed: the wall-clock fields are None.
    """
    texts = _as_list(texts, "texts")
    labels = _labels(labels, len(texts))
    results = []
    for k in keep_tokens:
        truncated = predict_batches(full_model, tokenizer, texts, k, batch_size, progress=progress)
        comparison = _comparison(truncated, full_predictions, labels)
        kept = (truncated.lengths.double() / full_predictions.lengths).mean().item()
        results.append({
            "method": "truncation",
            "setting": f"first {k} tokens",
            **comparison,
            "kept_fraction": [round(kept, 4)],
            "wall_speedup": None,
            "latency_ms": None,
            "throughput_per_s": None,
            "n_examples": len(texts),
            "batch_size": batch_size,
            "max_length": k,
        })
    return results


# ---------------------------------------------------------------------------- outputs
def results_record(result: dict, metric: str = "accuracy", key: str | None = None, **fields) -> dict:
    """A record for `write_results_json` from a result of `evaluate_classifier` or `truncation_baseline`
    (or of another evaluation, with its `metric` name and the `key` of its score in `result`): every
    field of `RECORD_FIELDS` (None if unknown), `score`, plus `fields` (method, setting, model, data,
    split, ...) and the result's other entries."""
    record = dict.fromkeys(RECORD_FIELDS)
    record.update(result)
    record.update(metric=metric, score=result[key or metric])
    record.update(fields)
    return record


def write_results_json(path: str | os.PathLike, benchmark: str, command: str, records: list[dict],
                       gpu: str | None = None, timing: dict | None = None) -> dict:
    """Write a results file (atomically) and return what was written. `gpu`: the GPU the runs used;
    `timing`: how long the run took (minutes per stage and in all), when the benchmark keeps it."""
    for i, record in enumerate(records):
        missing = [f for f in RECORD_FIELDS if f not in record]
        if missing:
            raise ValueError(f"record {i} lacks {missing} (results_record fills them)")
        score = record["score"]
        if score is not None and not 0.0 <= score <= 1.0:
            raise ValueError(f"record {i} has score {score}: scores are fractions in [0, 1]")
    report = {
        "benchmark": benchmark,
        "command": command,
        "date": datetime.date.today().isoformat(),
        "machine": machine(gpu),
        "versions": versions(),
        "records": list(records),
    }
    if timing is not None:
        report["timing"] = timing
    write_json(path, report)
    return report


def _accuracy_of(record: dict) -> float | None:
    return record.get("accuracy", record.get("score"))


def _full_accuracy(records: Sequence[dict]) -> float | None:
    for r in records:
        if r.get("full_accuracy") is not None:
            return r["full_accuracy"]
    for r in records:
        if r.get("method") == "full":
            return _accuracy_of(r)
    return None


def _error_bars(points: list[dict], full_accuracy: float | None) -> list[list[float]] | None:
    """[below, above] each point: its confidence interval as accuracies, full_accuracy + [ci_low, ci_high]."""
    if full_accuracy is None or not any(p.get("ci_low") is not None for p in points):
        return None
    below, above = [], []
    for p in points:
        if p.get("ci_low") is None or p.get("ci_high") is None:
            below.append(0.0)
            above.append(0.0)
            continue
        base = p.get("full_accuracy", full_accuracy)
        below.append(max(0.0, _accuracy_of(p) - (base + p["ci_low"])))
        above.append(max(0.0, base + p["ci_high"] - _accuracy_of(p)))
    return [below, above]


def plot_tradeoff(records: list[dict], path: str | os.PathLike, title: str, x: str = "flops_speedup",
                  y_label: str = "accuracy") -> None:
    """PNG of accuracy against speed-up, one line per method; the full model is a point at 1x with
    a dashed line at its accuracy. `x`: "flops_speedup" or "wall_speedup". Needs matplotlib."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if x not in X_LABELS:
        raise ValueError(f"x={x!r} must be one of {list(X_LABELS)}")
    full_accuracy = _full_accuracy(records)
    methods: dict[str, list[dict]] = {}
    for r in records:
        if r.get("method") != "full" and r.get(x) is not None and _accuracy_of(r) is not None:
            methods.setdefault(r.get("method") or "?", []).append(r)

    fig = Figure(figsize=(6.4, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for method, points in methods.items():
        points = sorted(points, key=lambda p: p[x])
        ax.errorbar([p[x] for p in points], [_accuracy_of(p) for p in points],
                    yerr=_error_bars(points, full_accuracy), marker="o", capsize=3, label=method)
    if full_accuracy is not None:
        ax.axhline(full_accuracy, color="gray", linestyle="--", linewidth=1)
        ax.plot([1.0], [full_accuracy], marker="*", markersize=14, color="black", linestyle="none", label="full model")
    ax.set_xlabel(X_LABELS[x])
    ax.set_ylabel(y_label)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    save_png(fig, path)
