"""A stage's files: Trainer checkpoints (resumable), the model folder (written whole) and the log.

A stage writing `OUT` keeps its Trainer checkpoints in `OUT-checkpoints` (a run picks up from the last
complete one) and writes `OUT` at its end atomically, so a killed run never leaves a folder that
half-loads; `OUT-log.jsonl` holds its metrics per logging step.
"""

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..errors import StaleStageError
from ..io import atomic_folder, atomic_write

TRAINER_STATE = "trainer_state.json"  # written last into a Trainer checkpoint: its presence marks it complete
LOG_KEYS = ("step", "epoch", "loss", "task_loss", "reward", "kept", "learning_rate", "grad_norm")
STAGE_RECORD = "trbert-stage.json"  # in a stage's model folder: what it was trained from (`stage_record`)
# Settings that change how a stage reports, not what it learns: not part of its record.
REPORTING_SETTINGS = ("save_steps", "logging_steps", "keep_checkpoints", "extra")


def last_complete_checkpoint(folder: str | os.PathLike) -> str | None:
    """The newest `checkpoint-N` holding a trainer state (a checkpoint cut off mid-write has none)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    done = [p for p in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if (p / TRAINER_STATE).is_file()]
    return str(max(done, key=lambda p: int(p.name.rsplit("-", 1)[1]))) if done else None


def save_atomically(model, tokenizer, target: str | os.PathLike, record: dict | None = None) -> Path:
    """Write a model folder (its tokenizer, and the stage's `record`) whole: next to `target`, then moved
    into place."""
    with atomic_folder(target) as staging:
        model.save_pretrained(staging)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        if record is not None:
            (staging / STAGE_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return Path(target)


def data_fingerprint(dataset) -> str:
    """A digest of a dataset's columns and rows, in order."""
    digest = hashlib.sha256(json.dumps(dataset.column_names).encode())
    for batch in dataset.iter(batch_size=1000):
        digest.update(json.dumps(batch, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:20]


def _plain(value):
    """A JSON value for a record: folders as absolute paths, a model given as an object by its class."""
    if isinstance(value, (str, os.PathLike)) and os.path.exists(value):
        return str(Path(value).resolve())
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return type(value).__name__


def stage_record(stage: str, source, dataset, settings, task: str, **options) -> dict:
    """What a stage is trained from: the model it starts from, its data (a fingerprint), its settings
    (those that change what it learns) and its options."""
    settings = {k: v for k, v in asdict(settings).items() if k not in REPORTING_SETTINGS}
    return _plain({"stage": stage, "source": source, "task": task, "data": data_fingerprint(dataset),
                   "settings": settings, "options": options})


def reuse_stage(folder: str | os.PathLike, record: dict) -> bool:
    """True when `folder` holds the stage already trained from what `record` says (or from what it did not
    record: a folder of an older version), False when it is not complete; StaleStageError when it was
    trained from something else."""
    if not stage_done(folder):
        return False
    path = Path(folder) / STAGE_RECORD
    if not path.is_file():
        return True
    recorded = json.loads(path.read_text())
    differ = [key for key in record if recorded.get(key) != record[key]]
    if differ:
        raise StaleStageError(f"{folder} was trained from another {' and '.join(differ)} than this one gives: "
                              f"write to another folder, or delete {folder} to train it again")
    return True


def stage_done(folder: str | os.PathLike) -> bool:
    """Whether a stage's model folder is complete (it has its config.json)."""
    return (Path(folder) / "config.json").is_file()


def log_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + "-log.jsonl")


def write_log(out: str | os.PathLike, history: list[dict] | None = None) -> int:
    """`<out>-log.jsonl`: the stage's metrics per logging step, one JSON object a line, from `history`
    (a Trainer's log history) or else the trainer state saved in `<out>-checkpoints` (the final one,
    or the last complete checkpoint). Returns the number of lines."""
    out = Path(out)
    if history is None:
        checkpoints = out.with_name(out.name + "-checkpoints")
        state = checkpoints / TRAINER_STATE
        if not state.is_file():
            last = last_complete_checkpoint(checkpoints)
            if last is None:
                return 0
            state = Path(last) / TRAINER_STATE
        history = json.loads(state.read_text())["log_history"]
    lines = []
    for entry in history:
        if "loss" not in entry:  # the end-of-training summary (train_loss, train_runtime, ...)
            continue
        ordered = {k: entry[k] for k in LOG_KEYS if k in entry}
        ordered.update((k, v) for k, v in entry.items() if k not in ordered)
        lines.append(json.dumps(ordered) + "\n")
    atomic_write(log_path(out), "".join(lines))
    return len(lines)
