"""The fine-tuned tiny classifier that the training tests start from (trained once per session)."""

import pytest
from builders import LABELS, synthetic

from trbert import training


@pytest.fixture(scope="session")
def finetuned(backbone, tmp_path_factory):
    """Stage 1 on the tiny synthetic task: a plain classifier that solves it."""
    out = tmp_path_factory.mktemp("runs") / "finetune"
    settings = training.StageSettings(epochs=12, learning_rate=2e-3, batch_size=32, max_length=64, save_steps=1000)
    training.finetune(backbone, synthetic(600, seed=1), out, settings, label_names=LABELS)
    return str(out)
