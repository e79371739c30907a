"""Learned Token Pruning (LTP): learn the score thresholds of `selection="attention_threshold"`.

The hard rule (a token goes on when the attention it receives reaches the step's threshold) has no
gradient, so the thresholds are learned on a soft relaxation, the backbone and head frozen: at each
reduction step every token gets a soft keep weight

    m = m_prev * sigmoid((score - theta_step) / temperature)

([CLS] 1, padding 0), with `score` the attention it receives (`trbert.strategies.attention_received`,
weighted by m_prev). The states entering the later layers are multiplied by m, and those layers'
attention adds log(m) to each key, so a token with a small weight fades as a key. Loss: the task
cross-entropy of the model's head plus lambda_ times the mean over steps of the kept fraction
(sum of m over the original length). Only the thresholds train (Adam), each theta = sigmoid(free
parameter), so it stays in (0, 1). `apply_thresholds` then sets the hard rule on the model (tokens
removed at inference).
"""

import itertools
import math
from collections.abc import Iterable

import torch
from tqdm.auto import tqdm

from .attention import MIN_WEIGHT, ThresholdStrategy, padded_attention_received


def soft_forward(model, batch: dict, thresholds: torch.Tensor, temperature: float):
    """Logits of a sequence classifier under the soft keep weights, and the kept fraction per step [B, steps]."""
    bert, config = model.base_model, model.config
    mask = batch["attention_mask"].bool()
    h = bert.embeddings(input_ids=batch["input_ids"], token_type_ids=batch.get("token_type_ids"))
    m = mask.to(h.dtype)
    first = torch.zeros_like(mask)
    first[:, 0] = True
    length = mask.sum(1).to(h.dtype)
    kept = []
    for i, layer in enumerate(bert.encoder.layer):
        if i in config.reduction_layers:
            score = padded_attention_received(layer, h, m)
            theta = thresholds[config.reduction_layers.index(i)]
            m = torch.where(first, 1.0, m * torch.sigmoid((score - theta) / temperature)) * mask
            h = h * m[..., None]
            kept.append(m.sum(1) / length)
        bias = m.clamp_min(MIN_WEIGHT).log().masked_fill(~mask, torch.finfo(h.dtype).min)
        h = layer(h, bias[:, None, None, :])
    if config.backbone != "bert":  # RoBERTa and MPNet: the head reads <s>
        logits = model.classifier(h)
    else:
        logits = model.classifier(model.dropout(bert.pooler(h)))
    return logits, torch.stack(kept, 1)


def _batches(data, batch_size: int, pad_token_id: int, seed: int) -> Iterable[dict]:
    """Endless batches: a list of ready batches (dicts of tensors) in turn, or a tokenized `datasets.Dataset`
    (input_ids, attention_mask, labels; optionally token_type_ids) shuffled each pass from `seed`, padded."""
    if not hasattr(data, "column_names"):
        yield from itertools.cycle(list(data))
        return
    gen = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(data), generator=gen).tolist()
        for start in range(0, len(order), batch_size):
            rows = data[order[start : start + batch_size]]
            width = max(len(ids) for ids in rows["input_ids"])
            batch = {}
            for key, pad in (("input_ids", pad_token_id), ("attention_mask", 0), ("token_type_ids", 0)):
                if key in rows:
                    batch[key] = torch.tensor([list(r) + [pad] * (width - len(r)) for r in rows[key]])
            batch["labels"] = torch.tensor(rows["labels"] if "labels" in rows else rows["label"])
            yield batch


def learn_thresholds(
    model,
    data,
    steps: int = 100,
    lambda_: float = 0.1,
    temperature: float = 0.01,
    lr: float = 0.05,
    init: float | list[float] = 0.01,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
    history: list | None = None,
) -> list[float]:
    """Learn one score threshold per reduction step for a `TRBertForSequenceClassification`.

    data: a list of batches (dicts with input_ids, attention_mask, labels; used in turn), or a tokenized
        `datasets.Dataset` (shuffled from `seed`, `batch_size` rows a batch).
    steps: optimiser steps. lambda_: weight of the kept fraction in the loss (larger: more removed).
    temperature: softness of the keep weights; a token of an n-token input receives 1/n on average, so
        it should be small against 1/n. init: the starting threshold(s), in (0, 1).
    history: when given, each step's {"loss", "task_loss", "kept"} is appended to it.
    Returns the thresholds; `apply_thresholds(model, thresholds)` makes them the model's rule.
    """
    if not hasattr(model, "classifier") or not hasattr(model.base_model, "embeddings"):
        raise TypeError(f"learn_thresholds needs a TRBertForSequenceClassification, got {type(model).__name__}")
    config = model.config
    if config.backbone == "mpnet":
        raise ValueError("learn_thresholds runs BERT layers with a soft mask and no position bias: it does not "
                         "learn MPNet's thresholds (its layers add a relative position bias)")
    n_steps = len(config.reduction_layers)
    init = [float(init)] * n_steps if isinstance(init, (int, float)) else [float(t) for t in init]
    if len(init) != n_steps or any(not 0.0 < t < 1.0 for t in init):
        raise ValueError(f"init={init} must be one threshold in (0, 1), or one per reduction step ({n_steps})")
    if temperature <= 0 or steps < 1:
        raise ValueError(f"need temperature > 0 (got {temperature}) and steps >= 1 (got {steps})")
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    was_training = model.training
    requires_grad = [p.requires_grad for p in model.parameters()]
    model.eval().requires_grad_(False)
    free = torch.tensor([math.log(t / (1 - t)) for t in init], device=device, requires_grad=True)
    optimizer = torch.optim.Adam([free], lr=lr)
    batches = _batches(data, batch_size, config.pad_token_id, seed)
    try:
        with tqdm(range(steps), desc="learning thresholds", disable=not progress) as bar:
            for _ in bar:
                batch = {k: v.to(device) for k, v in next(batches).items()}
                logits, kept = soft_forward(model, batch, torch.sigmoid(free), temperature)
                task_loss = model._loss(logits, batch["labels"])
                loss = task_loss + lambda_ * kept.mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                record = {"loss": loss.item(), "task_loss": task_loss.item(), "kept": kept.mean().item()}
                if history is not None:
                    history.append(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", kept=f"{record['kept']:.3f}")
    finally:
        for p, flag in zip(model.parameters(), requires_grad):
            p.requires_grad_(flag)
        model.train(was_training)
    return torch.sigmoid(free).detach().cpu().tolist()


def apply_thresholds(model, thresholds: list[float]) -> None:
    """Make the hard threshold rule the model's selection (tokens removed at inference); it is saved with
    the model (`selection="attention_threshold"`, `score_thresholds`) and reloads with it."""
    config, previous = model.config, (model.config.score_thresholds, model.config.selection)
    config.score_thresholds, config.selection = [float(t) for t in thresholds], "attention_threshold"
    try:
        config.validate_selection()
    except ValueError:
        config.score_thresholds, config.selection = previous
        raise
    model.set_strategy(ThresholdStrategy(model.base_model.encoder.layer))
