"""Sequence classification, single-label (`classification`: a `text` and a `label` column) and
multi-label (`multi-label`: a `text` and a `labels` column, a list of class ids per text, e.g. the
news digests of `trbert.data.load_digests`): features, task losses, distillation and metrics."""

import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification

from .base import Task, f1_from_counts, soft_cross_entropy


class Classification(Task):
    name = "classification"
    auto_class = AutoModelForSequenceClassification
    tr_class_name = "TRBertForSequenceClassification"
    label_keys = ("labels",)
    per_example_logits = True

    def features(self, dataset, tokenizer, max_length):
        return dataset.map(
            lambda batch: {**tokenizer(batch["text"], truncation=True, max_length=max_length), "labels": batch["label"]},
            batched=True, remove_columns=dataset.column_names, desc="tokenizing",
        )

    def losses(self, out, labels):
        return F.cross_entropy(out.logits, labels["labels"], reduction="none")

    def distill(self, out, teacher, attention_mask):
        return soft_cross_entropy(out.logits, teacher.logits).mean()


class MultiLabel(Classification):
    """Several labels per text: the model's classes are independent (sigmoid), the losses binary."""

    name = "multi-label"

    def features(self, dataset, tokenizer, max_length):
        n = len(dataset.features["labels"].feature.names)

        def encode(batch):
            hot = [[1.0 if c in set(ids) else 0.0 for c in range(n)] for ids in batch["labels"]]
            return {**tokenizer(batch["text"], truncation=True, max_length=max_length), "multi_hot": hot}

        # A new column name: mapped onto "labels" itself it would keep the class-id type (ints).
        encoded = dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="tokenizing")
        return encoded.rename_column("multi_hot", "labels")

    def losses(self, out, labels):
        return F.binary_cross_entropy_with_logits(out.logits.float(), labels["labels"].float(), reduction="none").mean(1)

    def distill(self, out, teacher, attention_mask):
        return F.binary_cross_entropy_with_logits(out.logits.float(), torch.sigmoid(teacher.logits.float()))

    def model_kwargs(self, label_names):
        return {**super().model_kwargs(label_names), "problem_type": "multi_label_classification"}


def accuracy(pred, labels) -> float:
    """Fraction of predictions equal to the labels."""
    pred, labels = torch.as_tensor(pred).cpu(), torch.as_tensor(labels).cpu()
    if pred.shape != labels.shape or pred.numel() == 0:
        raise ValueError(f"pred {tuple(pred.shape)} and labels {tuple(labels.shape)} must be the same non-empty shape")
    return (pred == labels).double().mean().item()


def micro_f1(predicted: torch.Tensor, gold: torch.Tensor) -> float:
    """Micro F1 of multi-label predictions ([N, C] bool against [N, C] bool)."""
    predicted, gold = predicted.bool(), gold.bool()
    counts = torch.stack([(predicted & gold).sum(), predicted.sum(), gold.sum()]).double()
    return float(f1_from_counts(counts))


def multi_hot(labels: list[list[int]], n_classes: int) -> torch.Tensor:
    hot = torch.zeros(len(labels), n_classes, dtype=torch.bool)
    for i, ids in enumerate(labels):
        hot[i, list(ids)] = True
    return hot
