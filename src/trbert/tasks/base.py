"""What the training stages need to know about a task: its model classes, how its data becomes model
inputs, its per-example task loss (the REINFORCE reward's first term) and its distillation loss."""

import torch
import torch.nn.functional as F

IGNORE = -100  # the label of tokens that carry none (as transformers' losses expect)


def soft_cross_entropy(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
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
        from .. import modeling  # the models import transformers' modeling code: only when a stage needs them

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


def f1_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """Micro F1 from summed counts [..., 3] (right, predicted, gold); 0 when nothing is predicted or gold."""
    right, predicted, gold = counts.unbind(-1)
    return torch.where(predicted + gold > 0, 2 * right / (predicted + gold).clamp(min=1e-12), torch.zeros_like(right))
