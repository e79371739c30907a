"""A model against the full model on the same examples and batches: accuracy (or F1), the difference
with a paired-bootstrap interval, tokens kept per step, FLOPs and wall-clock speed-up. One function
per task: `evaluate_classifier`, `evaluate_qa`, `evaluate_tagger`.

    full = predict_batches(full_model, tokenizer, texts, max_length, batch_size)
    tr = evaluate_classifier(model, full_model, tokenizer, texts, labels, max_length, batch_size,
                             full_predictions=full)
    truncated = truncation_baseline(full_model, tokenizer, texts, labels, [64, 128], full, batch_size)
    records = [results_record(r, model=..., data=..., split=...) for r in [tr, *truncated]]
    write_results_json(path, benchmark, command, records)
"""

from dataclasses import dataclass

import torch

from ..inputs import check_texts
from ..tasks.classification import accuracy
from ..tasks.question_answering import Answer, best_answers, squad_scores, window_batches
from ..tasks.token_classification import entity_counts, entity_f1, word_batches, word_tags
from .prediction import Predictions, encoded_batches, model_macs, predict_encoded, run_batches
from .statistics import check_labels, kept_fraction, micro_f1_statistic, paired_bootstrap
from .timing import timed_side_by_side


def comparison(predictions: Predictions, full: Predictions, labels: torch.Tensor) -> dict:
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
    texts = check_texts(texts, "texts")
    labels = check_labels(labels, len(texts))
    n = len(texts)
    batches = list(encoded_batches(tokenizer, texts, max_length, batch_size))
    predictions = predict_encoded(model, batches, total=n, progress=progress)
    full = full_predictions
    if full is None:
        full = predict_encoded(full_model, batches, total=n, progress=progress)
    result = {
        **comparison(predictions, full, labels),
        "kept_fraction": kept_fraction(predictions),
        "n_examples": n,
        "batch_size": batch_size,
        "max_length": max_length,
    }
    result.update(timed_side_by_side(model, full_model, batches, n, timing_repeats))
    return result


# ---------------------------------------------------------------------------- question answering
@dataclass
class QAPredictions:
    answers: list[Answer]  # one per question
    lengths: torch.Tensor  # [W] non-padding tokens of each window
    kept_lengths: torch.Tensor | None  # [W, steps]; None for a plain model
    macs: torch.Tensor  # [W] multiply-adds executed per window
    seconds: float  # wall time of the forward passes


def predict_qa(model, features: dict, batches: list, contexts: list[str], allow_null: bool = False,
               max_answer_len: int = 30, progress: bool = False) -> QAPredictions:
    """Answers of a span-extraction model over the windows of `window_batches`."""
    run = run_batches(model, batches, total=len(features["input_ids"]), desc="answering", unit="window",
                      progress=progress)
    starts = [row for out in run.outputs for row in out.start_logits]
    ends = [row for out in run.outputs for row in out.end_logits]
    answers = best_answers(features, starts, ends, contexts, max_answer_len, allow_null)
    return QAPredictions(answers, run.lengths, run.kept_lengths, model_macs(model, run.lengths, run.kept_lengths),
                         run.seconds)


def evaluate_qa(model, full_model, tokenizer, dataset, max_length: int = 384, stride: int = 128,
                batch_size: int = 32, timing_repeats: int = 1, allow_null: bool | None = None,
                progress: bool = True) -> dict:
    """Exact match and F1 of `model` and `full_model` on a SQuAD dataset, the F1 difference with a 95%
    paired-bootstrap interval over the questions, the tokens kept per step, the FLOPs speed-up and the
    wall-clock speed-up (the two models' forward passes interleaved). `allow_null` (answer "" when
    [CLS] wins): by default, when the data has unanswerable questions (SQuAD 2.0)."""
    gold = [list(a["text"]) for a in dataset["answers"]]
    if allow_null is None:
        allow_null = any(not g for g in gold)
    contexts = list(dataset["context"])
    features, batches = window_batches(tokenizer, dataset, max_length, stride, batch_size)
    ours = predict_qa(model, features, batches, contexts, allow_null, progress=progress)
    full = predict_qa(full_model, features, batches, contexts, allow_null, progress=progress)
    scores = squad_scores([a.text for a in ours.answers], gold)
    full_scores = squad_scores([a.text for a in full.answers], gold)
    boot = paired_bootstrap(torch.tensor(scores["per_question_f1"]), torch.tensor(full_scores["per_question_f1"]))
    result = {
        "exact_match": scores["exact_match"], "f1": scores["f1"],
        "full_exact_match": full_scores["exact_match"], "full_f1": full_scores["f1"],
        "f1_diff": boot.diff, "ci_low": boot.low, "ci_high": boot.high,
        "kept_fraction": kept_fraction(ours),
        "flops_speedup": round(float(full.macs.sum() / ours.macs.sum()), 4),
        "n_examples": len(gold), "n_windows": len(features["input_ids"]), "batch_size": batch_size,
        "max_length": max_length, "allow_null": allow_null,
        "answers": [a.text for a in ours.answers],
    }
    result.update(timed_side_by_side(model, full_model, batches, len(gold), timing_repeats))
    return result


# ---------------------------------------------------------------------------- token classification
@dataclass
class TagPredictions:
    tags: list[list[str]]  # per sentence, one tag per word (words cut off by max_length get "O")
    lengths: torch.Tensor  # [N] tokens of each sentence
    kept_lengths: torch.Tensor | None
    macs: torch.Tensor
    seconds: float


def predict_tags(model, batches: list, tag_names: list[str], n_words: list[int], progress: bool = False) -> TagPredictions:
    """Tags per word of a token-classification model over the batches of `word_batches`."""
    run = run_batches(model, batches, total=len(n_words), desc="tagging", unit="sentence", progress=progress)
    tags = []
    for batch, out in zip(batches, run.outputs):
        pred = out.logits.argmax(-1)
        for b in range(pred.shape[0]):
            tags.append(word_tags(pred[b], batch.word_ids(b), tag_names, n_words[len(tags)]))
    return TagPredictions(tags, run.lengths, run.kept_lengths, model_macs(model, run.lengths, run.kept_lengths),
                          run.seconds)


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
    boot = paired_bootstrap(entity_counts(gold, ours.tags), entity_counts(gold, full.tags), statistic=micro_f1_statistic)
    result = {
        "f1": entity_f1(gold, ours.tags), "full_f1": entity_f1(gold, full.tags),
        "f1_diff": boot.diff, "ci_low": boot.low, "ci_high": boot.high,
        "kept_fraction": kept_fraction(ours),
        "flops_speedup": round(float(full.macs.sum() / ours.macs.sum()), 4),
        "n_examples": len(sentences), "batch_size": batch_size, "max_length": max_length, "tags": ours.tags,
    }
    result.update(timed_side_by_side(model, full_model, batches, len(sentences), timing_repeats))
    return result

