"""Tasks: per task, how its data becomes model inputs, its task loss and distillation loss (the training
stages'), and how its outputs are decoded and scored.

* `classification` (`trbert.tasks.classification`): a `text` and a `label` column; one label per text.
* `multi-label` (same module): a `text` and a `labels` column (a list of class ids per text); task loss
  the mean binary cross-entropy over the classes.
* `question-answering` (`trbert.tasks.question_answering`): SQuAD rows (`trbert.data.load_squad`);
  windows over long contexts; task loss the mean of the start and end cross-entropies.
* `token-classification` (`trbert.tasks.token_classification`): `tokens` (words) and `ner_tags`
  columns (`trbert.data.load_wnut`); the first sub-token of each word carries its tag; task loss the
  mean cross-entropy over the example's tagged tokens.
"""

from .base import IGNORE, Task, f1_from_counts
from .classification import Classification, MultiLabel
from .question_answering import QuestionAnswering
from .token_classification import TokenClassification

TASKS = {task.name: task for task in (Classification, MultiLabel, QuestionAnswering, TokenClassification)}


def get_task(task: str | Task) -> Task:
    if isinstance(task, Task):
        return task
    if task not in TASKS:
        raise ValueError(f"task={task!r}: choose one of {sorted(TASKS)}")
    return TASKS[task]()


__all__ = ["IGNORE", "TASKS", "Classification", "MultiLabel", "QuestionAnswering", "Task", "TokenClassification",
           "f1_from_counts", "get_task"]
