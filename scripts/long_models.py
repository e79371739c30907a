"""Measure given TR long-input models on the news digests exactly as `trbert long` measures its own
(micro F1 against the segment baseline with its bootstrap interval, tokens kept per step, FLOPs and
wall-clock speed-up timed side by side), for models trained with other settings than the preset's:

    .venv/bin/python scripts/long_models.py --full-model runs/bbc-full-e2e/finetune \
        --model "digest-trained, steps 1,3, alpha=0.5, 1 policy epoch=runs/long-policy-1-epoch/layers-1-3/alpha-0.5/head" \
        --out docs/results/long_digests_policy_epochs.json

Each --model is SETTING=FOLDER (a model with long_input and a multi-label head, such as a `head` stage
folder of `trbert long`). Records go to --out in the results schema.
"""

import argparse
import shlex
import sys
from dataclasses import replace
from pathlib import Path

import torch

from trbert import evaluation, training
from trbert.benchmarks import long_documents


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full-model", required=True, help="the BBC News classifier (the segment baseline's model)")
    p.add_argument("--model", action="append", required=True, metavar="SETTING=FOLDER",
                   help="a TR long model and the setting that names it in the table (repeatable)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--out", required=True, help="results file to write")
    args = p.parse_args()
    models = {}
    for item in args.model:
        setting, sep, folder = item.rpartition("=")
        if not sep or not setting or not training.stage_done(folder):
            p.error(f"--model {item!r}: expected SETTING=FOLDER with a saved model in FOLDER")
        models[setting] = Path(folder)
    torch.set_num_threads(2)
    torch.manual_seed(0)
    preset = replace(long_documents.LongPreset(), batch_sizes=tuple(args.batch_sizes))
    records = long_documents.evaluate(preset, Path(args.full_model), models, progress=True)
    print(long_documents.table(records))
    command = shlex.join([".venv/bin/python", "scripts/long_models.py", *sys.argv[1:]])
    evaluation.write_results_json(args.out, "long_digests", command, records)


if __name__ == "__main__":
    main()
