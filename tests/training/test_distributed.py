"""`trbert train --stage all` as two CPU processes (torchrun, gloo): data-parallel training of every stage.

Small enough for a 2-core machine: 32 examples, 4 per process and step, one epoch, one thread per process.
"""

import json
import os
import subprocess
import sys

import pytest
import torch.distributed
from builders import CSV_COLUMNS, synthetic, write_csv
from transformers import AutoModelForSequenceClassification, BertForSequenceClassification

import trbert

PROCESSES, PER_DEVICE_BATCH, EXAMPLES = 2, 4, 32

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="needs torch.distributed with the gloo backend",
)


def test_train_all_as_two_processes(backbone, tmp_path):  # noqa: F811
    data = write_csv(tmp_path / "train.csv", synthetic(EXAMPLES, seed=1))
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(PROCESSES),
        "-m", "trbert", "train", "--stage", "all", "--out", str(out), "--backbone", backbone,
        "--data", str(data), *CSV_COLUMNS, "--epochs", "1", "--batch-size", str(PER_DEVICE_BATCH), "--samples", "2",
        "--lr", "1e-3", "--logging-steps", "1", "--save-steps", "1000", "--no-progress", "--keep-checkpoints",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    # Each step consumes PROCESSES x PER_DEVICE_BATCH examples: half the steps of one process.
    steps = EXAMPLES // (PROCESSES * PER_DEVICE_BATCH)
    for stage in ("finetune", "policy", "joint"):
        model = AutoModelForSequenceClassification.from_pretrained(out / stage)
        expected = BertForSequenceClassification if stage == "finetune" else trbert.TRBertForSequenceClassification
        assert type(model) is expected and model.config.num_labels == 3
        state = json.loads((out / f"{stage}-checkpoints" / "trainer_state.json").read_text())
        assert state["global_step"] == steps, stage
        log = [json.loads(line) for line in (out / f"{stage}-log.jsonl").read_text().splitlines()]
        assert [line["step"] for line in log] == list(range(1, steps + 1)), stage  # written once, by rank 0
    assert result.stdout.count("finetune: wrote") == 1  # only the first process prints

    # The loss is the per-example mean over both processes: about ln 3 for a new 3-class head, not
    # twice that (the Trainer's loss scaling for models that take **kwargs, turned off by `trbert train`).
    first = json.loads((out / "finetune-log.jsonl").read_text().splitlines()[0])
    assert first["loss"] == pytest.approx(1.0986, abs=0.3)
