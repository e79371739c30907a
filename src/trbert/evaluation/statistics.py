"""Statistics of an evaluation: the one paired bootstrap, kept fractions and the policy's reward."""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..tasks import f1_from_counts
from ..tasks.classification import accuracy

_BOOTSTRAP_CHUNK = 1 << 22  # index elements drawn at once by the bootstrap (32 MiB of int64)


@dataclass
class BootstrapResult:
    diff: float  # the statistic of system a minus that of system b
    low: float  # lower end of the confidence interval of diff
    high: float  # upper end


def paired_bootstrap(
    a: torch.Tensor,
    b: torch.Tensor,
    n_resamples: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
    statistic: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> BootstrapResult:
    """The statistic of a minus that of b, with a percentile confidence interval.

    Each resample draws N examples with replacement, the same ones for both systems (paired). By
    default `a` and `b` are per-example scores ([N]: 1/0 or True/False for accuracy, or any score in
    [0, 1] such as a question's F1) and the statistic is their mean. `statistic` maps resampled rows
    [R, N, ...] to R values: e.g. `micro_f1_statistic` on per-example counts [N, 3] (right, predicted,
    gold). Deterministic for a seed.
    """
    a, b = (torch.as_tensor(x).detach().cpu().double() for x in (a, b))
    if a.dim() == 0 or a.shape != b.shape or len(a) == 0 or (statistic is None and a.dim() != 1):
        raise ValueError(f"a {tuple(a.shape)} and b {tuple(b.shape)} must be equal, non-empty, one row per example")
    if n_resamples < 1 or not 0.0 < confidence < 1.0:
        raise ValueError(f"need n_resamples >= 1 (got {n_resamples}) and confidence in (0, 1) (got {confidence})")
    n = len(a)
    if statistic is None:  # the difference of means is the mean of the per-example differences
        delta = a - b  # per example: 1 only a right, -1 only b right, 0 alike

        def resampled(index):
            return delta[index].mean(1)

        point = delta.mean().item()
    else:
        def resampled(index):
            return statistic(a[index]) - statistic(b[index])

        point = float(statistic(a[None]) - statistic(b[None]))
    gen = torch.Generator().manual_seed(seed)
    rows = max(1, _BOOTSTRAP_CHUNK // a.numel())
    diffs = []
    for start in range(0, n_resamples, rows):
        index = torch.randint(n, (min(rows, n_resamples - start), n), generator=gen)
        diffs.append(resampled(index))
    tail = (1.0 - confidence) / 2
    low, high = torch.quantile(torch.cat(diffs), torch.tensor([tail, 1.0 - tail], dtype=torch.float64)).tolist()
    return BootstrapResult(point, low, high)


def micro_f1_statistic(counts: torch.Tensor) -> torch.Tensor:
    """Micro F1 of resampled per-example counts [R, N, 3] (right, predicted, gold): [R]."""
    return f1_from_counts(counts.sum(-2))


def check_labels(labels, n: int) -> torch.Tensor:
    """The labels as a [n] long tensor, or a clear error."""
    labels = torch.as_tensor(labels, dtype=torch.long).cpu()
    if labels.shape != (n,):
        raise ValueError(f"got {n} texts but labels of shape {tuple(labels.shape)}: give one label per text")
    return labels


def kept_fraction(predictions) -> list[float] | None:
    """Mean over examples of the fraction of its tokens each reduction step kept (None: no reduction).
    `predictions`: anything with `kept_lengths` [N, steps] and `lengths` [N]."""
    if predictions.kept_lengths is None:
        return None
    fraction = predictions.kept_lengths.double() / predictions.lengths[:, None]
    return [round(f, 4) for f in fraction.mean(0).tolist()]


def mean_reward(predictions, labels, alpha: float) -> dict:
    """The policy stage's reward averaged over held-out examples, with the keep rule of inference:
    -cross-entropy - alpha * the mean over reduction steps of the kept fraction. Returns it with its
    parts ("reward", "loss", "kept", "accuracy")."""
    labels = check_labels(labels, len(predictions))
    loss = torch.nn.functional.cross_entropy(predictions.logits.float(), labels).item()
    kept = 1.0
    if predictions.kept_lengths is not None:
        kept = (predictions.kept_lengths.double() / predictions.lengths[:, None]).mean().item()
    return {"reward": -loss - alpha * kept, "loss": loss, "kept": kept, "accuracy": accuracy(predictions.pred, labels)}
