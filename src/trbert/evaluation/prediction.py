"""Running a model over batches: the one prediction loop of every task and benchmark.

`run_batches` runs a model (or any callable batch -> output) over tokenized batches in order and
keeps its outputs, each example's length and the tokens each reduction step kept. The tasks decode
the outputs (`predict_classes` here; answers and tags in `trbert.evaluation.compare`).
"""

import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from ..cost import reduction_cost
from ..inputs import check_texts, encode


@dataclass
class BatchOutputs:
    """What `run_batches` keeps of a model's run over batches."""

    outputs: list  # per batch, the model's output (its tensors on the CPU)
    lengths: torch.Tensor  # [N] non-padding tokens of each example
    kept_lengths: torch.Tensor | None  # [N, steps] tokens kept by each reduction step; None for a plain model
    seconds: float  # wall time of the forward passes


@dataclass
class Predictions:
    """A classifier's outputs on a list of texts, in the order given."""

    logits: torch.Tensor  # [N, C]
    pred: torch.Tensor  # [N] long: the arg-max class
    lengths: torch.Tensor  # [N] non-padding tokens of each example
    kept_lengths: torch.Tensor | None  # [N, steps] tokens kept by each reduction step; None for a plain model
    macs: torch.Tensor  # [N] multiply-adds executed per example (float64)
    seconds: float  # wall time of the forward passes (tokenization excluded)

    def __len__(self) -> int:
        return len(self.pred)


@contextmanager
def eval_mode(model):
    """Evaluation mode (no dropout, no sampling) and no autograd for the duration; a module's mode is
    restored after. Any other callable runs as it is."""
    if not isinstance(model, nn.Module):
        with torch.inference_mode():
            yield model
        return
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield model
    finally:
        model.train(was_training)


def device_of(model) -> torch.device:
    """Where a module's parameters are (the CPU for any other callable)."""
    if isinstance(model, nn.Module):
        return next(model.parameters()).device
    return torch.device("cpu")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (what a wall-clock measurement must include)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_macs(model, lengths: torch.Tensor, kept_lengths: torch.Tensor | None) -> torch.Tensor:
    """[N] multiply-adds a model executed on examples of the given lengths (see `trbert.cost`)."""
    # A plain model (no kept_lengths) runs every layer on every real token: reduction_cost's full cost.
    # Otherwise the model's current strategy says what its selection cost.
    # (An exported model runs the selection of its config: True.)
    strategy = False if kept_lengths is None else (
        model.base_model.encoder.strategy if isinstance(model, nn.Module) else True)
    return reduction_cost(model.config, lengths, kept_lengths, strategy=strategy).macs


def _to_cpu(output):
    """A model output with its tensors moved to the CPU (logits as float32)."""
    if isinstance(output, torch.Tensor):
        return output.float().cpu()
    fields = output.items() if hasattr(output, "items") else vars(output).items()
    moved = {k: v.float().cpu() if isinstance(v, torch.Tensor) and v.is_floating_point() else
             v.cpu() if isinstance(v, torch.Tensor) else v for k, v in fields}
    return type(output)(**moved)


def run_batches(model: Callable, batches: Iterable, total: int | None = None, desc: str = "predicting",
                unit: str = "text", progress: bool = False) -> BatchOutputs:
    """Run `model` over tokenized batches in order: a module in evaluation mode on its device, or any
    callable taking the batch's fields (an ONNX Runtime session wrapper) as it is. The forward passes
    are timed (tokenization and copies excluded)."""
    device = device_of(model)
    outputs, lengths, kept = [], [], []
    seconds = 0.0
    bar = tqdm(total=total, desc=desc, unit=unit, disable=not progress) if progress else nullcontext()
    with eval_mode(model), bar:
        for batch in batches:
            inputs = {k: v.to(device) for k, v in batch.items()}
            start = time.perf_counter()
            out = model(**inputs)
            synchronize(device)
            seconds += time.perf_counter() - start
            outputs.append(_to_cpu(out))
            lengths.append(batch["attention_mask"].sum(1).cpu())
            if getattr(out, "kept_lengths", None) is not None:
                kept.append(out.kept_lengths.cpu())
            if progress:
                bar.update(len(lengths[-1]))
    if not outputs:
        raise ValueError("there are no batches to predict")
    return BatchOutputs(outputs, torch.cat(lengths), torch.cat(kept) if kept else None, seconds)


def encoded_batches(tokenizer, texts: Sequence[str], max_length: int, batch_size: int) -> Iterable:
    """The texts tokenized batch by batch (`trbert.encode`), in the order given."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")
    for start in range(0, len(texts), batch_size):
        yield encode(tokenizer, list(texts[start : start + batch_size]), max_length=max_length)


def predict_encoded(model, batches: Iterable, total: int | None = None, progress: bool = False,
                    macs: Callable | None = None) -> Predictions:
    """Run a classifier on already tokenized batches (e.g. from `encoded_batches`). `macs(lengths,
    kept_lengths)`: what it executed per example (default: `model_macs` of the module)."""
    run = run_batches(model, batches, total=total, progress=progress)
    logits = torch.cat([out.logits for out in run.outputs])
    macs = macs or (lambda lengths, kept: model_macs(model, lengths, kept))
    return Predictions(logits, logits.argmax(-1), run.lengths, run.kept_lengths, macs(run.lengths, run.kept_lengths),
                       run.seconds)


def predict_batches(
    model, tokenizer, texts: list[str], max_length: int, batch_size: int, progress: bool = True
) -> Predictions:
    """Classify texts in batches of `batch_size`, in the order given, truncated to `max_length` tokens."""
    texts = check_texts(texts, "texts")  # a bad text is reported by its index in the whole list
    batches = encoded_batches(tokenizer, texts, max_length, batch_size)
    return predict_encoded(model, batches, total=len(texts), progress=progress)
