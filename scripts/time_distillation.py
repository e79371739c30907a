"""Time one joint stage on BBC News training articles three ways: the teacher run on every batch, its
logits computed beforehand (`trbert.training.teacher_logits`, the pass included), and those logits
reused (as by a later stage of the same run).

    .venv/bin/python scripts/time_distillation.py 64

Needs the full preset's stage-1 and alpha-1 (steps at layers 0, 3) policy folders under runs/bbc-full
(`trbert run --preset full`). Writes its stages under a temporary folder.
"""

import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from trbert import recipe, tasks, training
from trbert.data import load_bbc

RUN = Path("runs/bbc-full")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    torch.set_num_threads(2)
    source, teacher = RUN / "layers-0-3/alpha-1/policy", RUN / "finetune"
    if not (training.stage_done(source) and training.stage_done(teacher)):
        sys.exit(f"needs {source} and {teacher}: run `trbert run --preset full` first")
    train = load_bbc(seed=0)["train"]
    settings = replace(recipe.PRESETS["full"].joint, max_length=512, alpha=1.0, max_examples=n, epochs=1,
                       save_steps=10**6, extra={"disable_tqdm": True})
    with tempfile.TemporaryDirectory() as tmp:
        for label, cached in (("teacher on every batch", False), ("logits computed first", True),
                              ("logits reused", True)):
            tasks.Classification.per_example_logits = cached
            out = Path(tmp) / label.replace(" ", "-")
            start = time.perf_counter()
            training.train_joint(str(source), str(teacher), train, out, settings)
            print(f"{label}: {time.perf_counter() - start:.1f} s ({n} articles, one epoch)", flush=True)
            shutil.rmtree(out)


if __name__ == "__main__":
    main()
