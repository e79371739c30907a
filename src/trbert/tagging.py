"""Sequence labelling: tags per word from a token-classification model, entity F1 with seqeval.

A word's tag is the prediction at its first sub-token (the token that carries the label in
training, `trbert.tasks.TokenClassification`). Entity F1 is seqeval's micro F1 over entities
(a predicted entity counts only with the right type and the exact span). Its confidence interval
resamples sentences: the counts of true, predicted and gold entities of each sentence are summed
over a resample, so each resample's F1 is exact and cheap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from seqeval.metrics.sequence_labeling import get_entities
from tqdm.auto import tqdm

from .evaluation import _device, _eval_mode, _synchronize, kept_fraction, model_macs, timed_side_by_side


@dataclass
class TagPredictions:
    tags: list[list[str]]  # per sentence, one tag per word (words cut off by max_length get "O")
    lengths: torch.Tensor  # [N] tokens of each sentence
    kept_lengths: torch.Tensor | None
    macs: torch.Tensor
    seconds: float


def word_batches(tokenizer, sentences: list[list[str]], max_length: int, batch_size: int) -> list:
    """Tokenized batches of sentences given as words (`is_split_into_words`), in order."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")
    for i, words in enumerate(sentences):
        if not words or not any(w.strip() for w in words):
            raise ValueError(f"sentence {i} has no words")
    return [tokenizer(sentences[s:s + batch_size], is_split_into_words=True, truncation=True, max_length=max_length,
                      padding=True, return_tensors="pt") for s in range(0, len(sentences), batch_size)]


def predict_tags(model, batches: list, tag_names: list[str], n_words: list[int], progress: bool = False) -> TagPredictions:
    device = _device(model)
    tags, lengths, kept = [], [], []
    seconds = 0.0
    with _eval_mode(model), tqdm(total=len(n_words), desc="tagging", unit="sentence", disable=not progress) as bar:
        for batch in batches:
            inputs = {k: v.to(device) for k, v in batch.items()}
            start = time.perf_counter()
            out = model(**inputs)
            _synchronize(device)
            seconds += time.perf_counter() - start
            pred = out.logits.argmax(-1).cpu()
            for b in range(pred.shape[0]):
                words = ["O"] * n_words[len(tags)]
                previous = None
                for t, word in enumerate(batch.word_ids(b)):
                    if word is not None and word != previous:
                        words[word] = tag_names[int(pred[b, t])]
                    previous = word
                tags.append(words)
            lengths.append(batch["attention_mask"].sum(1))
            if getattr(out, "kept_lengths", None) is not None:
                kept.append(out.kept_lengths.cpu())
            bar.update(pred.shape[0])
    lengths = torch.cat(lengths)
    kept = torch.cat(kept) if kept else None
    return TagPredictions(tags, lengths, kept, model_macs(model, lengths, kept), seconds)


def entity_counts(gold: list[list[str]], pred: list[list[str]]) -> torch.Tensor:
    """[N, 3] per sentence: entities right (type and span), predicted, and gold."""
    rows = []
    for g, p in zip(gold, pred):
        g_set, p_set = set(get_entities(list(g))), set(get_entities(list(p)))
        rows.append((len(g_set & p_set), len(p_set), len(g_set)))
    return torch.tensor(rows, dtype=torch.float64)


def _f1(counts: torch.Tensor) -> torch.Tensor:
    """Micro F1 from summed counts [..., 3] (0 when nothing is predicted or gold)."""
    right, predicted, gold = counts.unbind(-1)
    return torch.where(predicted + gold > 0, 2 * right / (predicted + gold).clamp(min=1e-12), torch.zeros_like(right))


def entity_f1(gold: list[list[str]], pred: list[list[str]]) -> float:
    return float(_f1(entity_counts(gold, pred).sum(0)))


def f1_bootstrap(gold, pred_a, pred_b, n_resamples: int = 10000, seed: int = 0) -> tuple[float, float, float]:
    """F1(a) - F1(b) with a 95% interval from resampling sentences (the same ones for both)."""
    return counts_bootstrap(entity_counts(gold, pred_a), entity_counts(gold, pred_b), n_resamples, seed)


def counts_bootstrap(a: torch.Tensor, b: torch.Tensor, n_resamples: int = 10000,
                     seed: int = 0) -> tuple[float, float, float]:
    """Micro F1(a) - F1(b) from per-example counts [N, 3] (right, predicted, gold), with a 95% interval
    from resampling examples (the same ones for both)."""
    gen = torch.Generator().manual_seed(seed)
    diffs = []
    for start in range(0, n_resamples, 500):
        index = torch.randint(len(a), (min(500, n_resamples - start), len(a)), generator=gen)
        diffs.append(_f1(a[index].sum(1)) - _f1(b[index].sum(1)))
    low, high = torch.quantile(torch.cat(diffs), torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return float(_f1(a.sum(0)) - _f1(b.sum(0))), low, high


def evaluate_tagger(model, full_model, tokenizer, dataset, max_length: int, batch_size: int = 32,
                    timing_repeats: int = 1, progress: bool = True) -> dict:
    """Entity F1 of `model` and `full_model` on a dataset with `tokens` and `ner_tags` columns, the
    difference with a 95% bootstrap interval, tokens kept per step, FLOPs and wall-clock speed-up."""
    sentences = [list(words) for words in dataset["tokens"]]
    names = dataset.features["ner_tags"].feature.names
    gold = [[names[t] for t in tags] for tags in dataset["ner_tags"]]
    batches = word_batches(tokenizer, sentences, max_length, batch_size)
    n_words = [len(s) for s in sentences]
    ours = predict_tags(model, batches, names, n_words, progress)
    full = predict_tags(full_model, batches, names, n_words, progress)
    diff, low, high = f1_bootstrap(gold, ours.tags, full.tags)
    result = {
        "f1": entity_f1(gold, ours.tags), "full_f1": entity_f1(gold, full.tags),
        "f1_diff": diff, "ci_low": low, "ci_high": high,
        "kept_fraction": kept_fraction(ours),
        "flops_speedup": round(float(full.macs.sum() / ours.macs.sum()), 4),
        "n_examples": len(sentences), "batch_size": batch_size, "max_length": max_length, "tags": ours.tags,
    }
    result.update(timed_side_by_side(model, full_model, batches, len(sentences), timing_repeats))
    return result

