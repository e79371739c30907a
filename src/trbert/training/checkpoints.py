"""A stage's files: Trainer checkpoints (resumable), the model folder (written whole) and the log.

A stage writing `OUT` keeps its Trainer checkpoints in `OUT-checkpoints` (a run picks up from the last
complete one) and writes `OUT` at its end atomically, so a killed run never leaves a folder that
half-loads; `OUT-log.jsonl` holds its metrics per logging step.
"""

import json
import os
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..io import atomic_folder, atomic_write

TRAINER_STATE = "trainer_state.json"  # written last into a Trainer checkpoint: its presence marks it complete
LOG_KEYS = ("step", "epoch", "loss", "task_loss", "reward", "kept", "learning_rate", "grad_norm")


def last_complete_checkpoint(folder: str | os.PathLike) -> str | None:
    """The newest `checkpoint-N` holding a trainer state (a checkpoint cut off mid-write has none)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    done = [p for p in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if (p / TRAINER_STATE).is_file()]
    return str(max(done, key=lambda p: int(p.name.rsplit("-", 1)[1]))) if done else None


def save_atomically(model, tokenizer, target: str | os.PathLike) -> Path:
    """Write a model folder (and its tokenizer) whole: next to `target`, then moved into place."""
    with atomic_folder(target) as staging:
        model.save_pretrained(staging)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
    return Path(target)


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
