"""Sequence classification tasks: features, per-example losses, distillation, and the metrics."""

import pytest
import torch
import torch.nn.functional as F
from builders import LABELS, synthetic
from datasets import ClassLabel, Dataset, Features, Sequence, Value
from transformers.modeling_outputs import SequenceClassifierOutput

from trbert.tasks import MultiLabel, get_task
from trbert.tasks.classification import accuracy, micro_f1, multi_hot


def test_get_task_names_every_task_and_refuses_others():
    assert {get_task(name).name for name in ("classification", "multi-label", "question-answering",
                                             "token-classification")} == {"classification", "multi-label",
                                                                          "question-answering", "token-classification"}
    task = MultiLabel()
    assert get_task(task) is task
    with pytest.raises(ValueError, match="choose one of"):
        get_task("summarization")


def test_classification_features_and_losses(tokenizer):
    data = synthetic(6, seed=0)
    features = get_task("classification").features(data, tokenizer, max_length=12)
    assert features.column_names == ["input_ids", "token_type_ids", "attention_mask", "labels"]
    assert features["labels"] == list(data["label"]) and max(len(ids) for ids in features["input_ids"]) == 12
    logits, labels = torch.randn(6, len(LABELS)), torch.tensor(data["label"])
    out = SequenceClassifierOutput(logits=logits)
    task = get_task("classification")
    torch.testing.assert_close(task.losses(out, {"labels": labels}), F.cross_entropy(logits, labels, reduction="none"))
    # Distilling from itself: the teacher's entropy, the least the soft cross-entropy can be.
    entropy = -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(task.distill(out, out, None), entropy)
    assert task.distill(SequenceClassifierOutput(logits=torch.randn(6, 3)), out, None) > entropy


def test_multi_label_features_are_multi_hot_and_losses_binary(tokenizer):
    names = ["a", "b", "c"]
    data = Dataset.from_dict({"text": ["w1 w2", "w3", "w4 w5 w6"], "labels": [[0, 2], [], [1]]},
                             features=Features({"text": Value("string"), "labels": Sequence(ClassLabel(names=names))}))
    task = get_task("multi-label")
    features = task.features(data, tokenizer, max_length=8)
    assert features["labels"] == [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    assert task.model_kwargs(names)["problem_type"] == "multi_label_classification"
    logits, target = torch.randn(3, 3), torch.tensor(features["labels"])
    expected = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(1)
    torch.testing.assert_close(task.losses(SequenceClassifierOutput(logits=logits), {"labels": target}), expected)


def test_metrics():
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    with pytest.raises(ValueError, match="same non-empty shape"):
        accuracy([0, 1], [0])
    gold = multi_hot([[0, 2], [], [1]], 3)
    assert gold.tolist() == [[True, False, True], [False, False, False], [False, True, False]]
    predicted = multi_hot([[0], [1], [1]], 3)  # 2 right, 3 predicted, 3 gold
    assert micro_f1(predicted, gold) == pytest.approx(2 * 2 / (3 + 3))
    assert micro_f1(multi_hot([[]], 2), multi_hot([[]], 2)) == 0.0
