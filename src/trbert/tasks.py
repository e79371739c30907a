"""What the training stages need to know about a task: its model classes, how its data becomes
model inputs, its per-example task loss (the REINFORCE reward's first term) and its distillation loss.

* `classification`: a `text` and a `label` column; one label per text.
* `question-answering`: SQuAD rows (`trbert.data.load_squad`); windows over long contexts; task loss
  the mean of the start and end cross-entropies.
* `multi-label`: a `text` and a `labels` column (a list of class ids per text, e.g. the news digests of
  `trbert.data.load_digests`); task loss the mean binary cross-entropy over the classes.
* `token-classification`: `tokens` (words) and `ner_tags` columns (`trbert.data.load_wnut`); the
  first sub-token of each word carries its tag, the others are ignored; task loss the mean
  cross-entropy over the example's tagged tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import (
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

IGNORE = -100  # the label of tokens that carry none (as transformers' losses expect)


def _soft_cross_entropy(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the student's logits against the teacher's softmax (temperature 1), per row."""
    return -(F.softmax(teacher.float(), dim=-1) * F.log_softmax(student.float(), dim=-1)).sum(-1)


class Task:
    name: str
    auto_class: type  # the plain transformers model of stage 1
    tr_class_name: str  # the trbert model of stages 2 and 3
    label_keys: tuple[str, ...]
    # The teacher's output is one logit vector per example (not per token): distillation can compute it
    # once for the whole training set (`trbert.training.teacher_logits`) instead of on every batch.
    per_example_logits = False

    @property
    def tr_class(self):
        from . import modeling

        return getattr(modeling, self.tr_class_name)

    def features(self, dataset, tokenizer, max_length: int):
        """The dataset as model inputs plus the label keys."""
        raise NotImplementedError

    def losses(self, out, labels: dict) -> torch.Tensor:
        """[N] task loss of each example."""
        raise NotImplementedError

    def distill(self, out, teacher, attention_mask: torch.Tensor) -> torch.Tensor:
        """Scalar distillation loss of the student's output against the teacher's."""
        raise NotImplementedError

    def model_kwargs(self, label_names: list[str] | None) -> dict:
        if not label_names:
            return {}
        return {"num_labels": len(label_names), "id2label": dict(enumerate(label_names)),
                "label2id": {n: i for i, n in enumerate(label_names)}}


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
        return _soft_cross_entropy(out.logits, teacher.logits).mean()


class MultiLabel(Task):
    name = "multi-label"
    auto_class = AutoModelForSequenceClassification
    tr_class_name = "TRBertForSequenceClassification"
    label_keys = ("labels",)
    per_example_logits = True

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


class QuestionAnswering(Task):
    name = "question-answering"
    auto_class = AutoModelForQuestionAnswering
    tr_class_name = "TRBertForQuestionAnswering"
    label_keys = ("start_positions", "end_positions")

    def __init__(self, stride: int = 128):
        self.stride = stride

    def features(self, dataset, tokenizer, max_length):
        from .qa import prepare_features

        def windows(batch):
            answers = [dict(a) for a in batch["answers"]]
            f = prepare_features(tokenizer, batch["question"], batch["context"], max_length,
                                 min(self.stride, max_length // 2 - 1), answers=answers, ids=batch["id"])
            f.pop("offsets")
            f.pop("example")
            return f

        return dataset.map(windows, batched=True, remove_columns=dataset.column_names, desc="windows")

    def losses(self, out, labels):
        start = F.cross_entropy(out.start_logits, labels["start_positions"], reduction="none")
        end = F.cross_entropy(out.end_logits, labels["end_positions"], reduction="none")
        return (start + end) / 2

    def distill(self, out, teacher, attention_mask):
        pad = attention_mask == 0
        total = 0.0
        for s, t in ((out.start_logits, teacher.start_logits), (out.end_logits, teacher.end_logits)):
            total = total + _soft_cross_entropy(s.masked_fill(pad, -1e4), t.masked_fill(pad, -1e4)).mean()
        return total / 2


class TokenClassification(Task):
    name = "token-classification"
    auto_class = AutoModelForTokenClassification
    tr_class_name = "TRBertForTokenClassification"
    label_keys = ("labels",)

    def features(self, dataset, tokenizer, max_length):
        def align(batch):
            enc = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
            labels = []
            for i, tags in enumerate(batch["ner_tags"]):
                previous, row = None, []
                for word in enc.word_ids(i):
                    row.append(IGNORE if word is None or word == previous else tags[word])
                    previous = word
                labels.append(row)
            return {**enc, "labels": labels}

        return dataset.map(align, batched=True, remove_columns=dataset.column_names, desc="tokenizing")

    def losses(self, out, labels):
        tags = labels["labels"]
        per_token = F.cross_entropy(out.logits.transpose(1, 2), tags, ignore_index=IGNORE, reduction="none")
        counted = (tags != IGNORE).sum(1).clamp(min=1)
        return per_token.sum(1) / counted

    def distill(self, out, teacher, attention_mask):
        per_token = _soft_cross_entropy(out.logits, teacher.logits)
        mask = attention_mask.to(per_token.dtype)
        return (per_token * mask).sum() / mask.sum().clamp(min=1)


TASKS = {task.name: task for task in (Classification, MultiLabel, QuestionAnswering, TokenClassification)}


def get_task(task: str | Task) -> Task:
    if isinstance(task, Task):
        return task
    if task not in TASKS:
        raise ValueError(f"task={task!r}: choose one of {sorted(TASKS)}")
    return TASKS[task]()
