"""`trbert train`: one stage of the recipe, or all of them."""

from dataclasses import dataclass
from pathlib import Path

from .common import (
    CommandError,
    Labelled,
    add_data_options,
    dropout_rate,
    fit_max_length,
    formatter,
    is_main_process,
    keep_ratio,
    label_names,
    load_config,
    load_task_data,
    model_folder,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    quiet_progress,
    resolve_backbone,
    say,
    sequence_length,
    unit_float,
)

TRAIN_DESCRIPTION = """\
Train a TR-BERT model: one stage of the recipe, or all three in a row. --task chooses the head:
a sequence classifier (default), span question answering (SQuAD files; long contexts in
overlapping windows) or token classification (WNUT-16).

  finetune  the backbone with the task's head: a plain transformers model (the full model)
  policy    the keep policies by REINFORCE, the backbone frozen; from --source (a finetune folder)
  joint     every parameter: distillation from --teacher (the finetune folder) plus REINFORCE;
            from --source (a policy folder). For classification by default the policies stay as the
            policy stage left them and only the backbone and head are tuned, by distillation
            (--tune-policies: the paper's joint stage, the policies tuned by REINFORCE too)
  all       finetune, policy and joint into OUT/finetune, OUT/policy and OUT/joint
            With --max-drop P: to an accuracy budget. After the fine-tune, the policy and joint
            stages for each of --alphas into OUT/alpha-A/; each candidate is scored on the
            validation data, and the fastest (fewest FLOPs) within P points of the full model
            is kept. Prints the candidates' table; OUT/trbert-budget.json and the kept model's
            folder record the choice. Classification only.
  capped    optional, after joint: every step keeps at most --max-keep-ratio of an example's tokens
            (the policies' best), the backbone tuned to that by distillation from --teacher, the
            policies frozen; from --source (a joint folder). The cap is saved with the model.

Token-level early exit (--task token-classification), the alternative to the policy:
  exits          internal classifiers before layers 1..L-1, the rest frozen; from --source (finetune)
  self-sampling  every parameter, tokens leaving at random steps; from --source (an exits folder)
  early-exit     finetune, exits and self-sampling into OUT/finetune, OUT/exits, OUT/self-sampling

Writes the model folder (OUT, or OUT/<stage> with --stage all), which loads with the task's
AutoModelFor... class; the Trainer's checkpoints beside it in <folder>-checkpoints while the stage
trains (removed once the folder is written, unless --keep-checkpoints);
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
  trbert train --stage all --out runs/20news --data 20newsgroups --max-length 256 --max-drop 1
  trbert train --stage all --out runs/mine --data train.csv --validation dev.csv --max-drop 0.5 --alphas 0.5 1 2
  trbert train --stage finetune --out runs/ft --max-length 256 --epochs 3
  trbert train --stage finetune --out runs/ft --head-lr 1e-3       # the new head at its own rate
  trbert train --stage policy --source runs/ft --out runs/policy-a0.5 --alpha 0.5 --reduction-layers 1 3   # the paper's
  trbert train --stage joint --source runs/policy-a0.5 --teacher runs/ft --out runs/joint-a0.5
  trbert train --stage joint --source runs/policy-a0.5 --teacher runs/ft --out runs/joint-a0.5-tuned --tune-policies
  trbert train --stage capped --source runs/joint-a0.5 --teacher runs/ft --max-keep-ratio 0.1 --out runs/cap-0.1
  trbert train --stage all --task question-answering --data train-v1.1.json --max-length 384 --out runs/squad
  trbert train --stage all --task token-classification --out runs/wnut
  trbert train --stage early-exit --task token-classification --out runs/wnut-exit --exit-threshold 0.2
  torchrun --nproc_per_node 2 -m trbert train --stage finetune --out runs/ft"""


def add(subparsers):
    p = subparsers.add_parser("train", help="train a TR-BERT model (classifier, QA, tagger): finetune, policy, joint, or all three",
                              description=TRAIN_DESCRIPTION, epilog=TRAIN_EPILOG, formatter_class=formatter)
    p.add_argument("--stage", required=True,
                   choices=["finetune", "policy", "joint", "all", "capped", "exits", "self-sampling", "early-exit"],
                   help="what to train (see above)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="the model folder to write (with --stage all: the folder of the three stage folders)")
    p.add_argument("--source", metavar="DIR",
                   help="policy: the finetune folder; joint: the policy folder; capped: the joint folder")
    p.add_argument("--teacher", metavar="DIR", help="joint, capped: the finetune folder (the model distilled from)")
    p.add_argument("--backbone", metavar="DIR",
                   help="finetune, all: the encoder to start from: a folder, or all-mpnet-base-v2 (`trbert backbone`) "
                        "(default: the embedded all-MiniLM-L6-v2)")
    add_data_options(p, "training data")
    p.add_argument("--alpha", type=non_negative_float, default=1.0,
                   help="weight of the kept-token penalty in the reward: larger keeps fewer tokens (default: 1.0)")
    p.add_argument("--max-drop", type=non_negative_float, metavar="P",
                   help="all: train to an accuracy budget: keep the fastest of an alpha sweep whose validation "
                        "score is within P points of the full model's (see above)")
    p.add_argument("--alphas", type=non_negative_float, nargs="+", metavar="A",
                   help="with --max-drop: the alphas of the sweep (default: 0.2 0.5 1 2)")
    p.add_argument("--validation", metavar="PATH",
                   help="with --max-drop and a file as --data: the validation file (default: a seeded, "
                        "stratified 10%% of the training file, held out of training); named data sets use "
                        "their validation split")
    p.add_argument("--samples", type=positive_int, metavar="K",
                   help="keep trajectories sampled per example (default: 8 policy, 4 joint)")
    p.add_argument("--epochs", type=positive_float, help="training epochs (default: per stage, below)")
    p.add_argument("--lr", type=positive_float, help="peak learning rate (default: per stage, below)")
    p.add_argument("--head-lr", type=positive_float, metavar="LR",
                   help="finetune, all: peak learning rate of the new task head (pooler and classifier) "
                        "(default: --lr)")
    p.add_argument("--batch-size", type=positive_int, metavar="B",
                   help="examples per step and process (default: per stage, below)")
    p.add_argument("--max-length", type=sequence_length, metavar="N",
                   help="truncate texts to N tokens (default: the length the model was trained at, else its limit, at most 512)")
    p.add_argument("--max-examples", type=positive_int, metavar="N",
                   help="train on a random (seeded) subset of N examples (default: all)")
    p.add_argument("--attention-dropout", type=dropout_rate, metavar="P",
                   help="dropout on the attention probabilities while training, in [0, 1) (default: the "
                        "checkpoint's, 0.1 for BERT; 0 trains much faster on CPU at long inputs)")
    p.add_argument("--bf16", action="store_true",
                   help="mixed-precision training: matrix products in bfloat16, weights kept in fp32 (only where "
                        "bfloat16 is native, AVX-512 BF16 or AMX; fp32 with a notice elsewhere; saved models are fp32)")
    p.add_argument("--keep-rule", choices=["expected", "threshold"], default="expected",
                   help="inference rule saved with the policy: keep round(sum p) tokens per example "
                        "(expected, default) or those with p >= keep_threshold (threshold, the paper's)")
    p.add_argument("--max-keep-ratio", type=keep_ratio, metavar="R",
                   help="capped: the most any step keeps, as a fraction of each example's tokens, in (0, 1]")
    p.add_argument("--freeze-policies", action="store_true",
                   help="joint, all: keep the policies frozen in the joint stage and tune the backbone and "
                        "head by distillation alone, with the keep decisions of inference (no REINFORCE); "
                        "the default for classification")
    p.add_argument("--tune-policies", action="store_true",
                   help="joint, all: the paper's joint stage, the policies tuned by REINFORCE beside the "
                        "distillation (the default for question answering and token classification)")
    p.add_argument("--guide-rate", type=unit_float, default=0.0, metavar="R",
                   help="policy, all: imitation warm-up: for the first fraction R of the steps one of the K "
                        "trajectories is the residual heuristic's (default: 0, none)")
    p.add_argument("--protect-question", action="store_true",
                   help="policy, all: never skip the tokens up to the first separator (the question of a QA "
                        "input; off by default, as in the paper)")
    p.add_argument("--reduction-layers", type=non_negative_int, nargs="+", metavar="I",
                   help="policy, all: layers before which tokens are reduced, 0 for the embeddings (default "
                        "for classification: 0 and L/2, i.e. 0 3 for 6 layers, chosen from measurements on BBC "
                        "News and 20 Newsgroups; otherwise the paper's 1 and L/2)")
    p.add_argument("--exit-threshold", type=unit_float, default=0.1, metavar="U",
                   help="exits, early-exit: a token leaves when the uncertainty in its window is below U, in [0, 1] "
                        "(saved with the model; default: 0.1)")
    p.add_argument("--exit-window", type=non_negative_int, default=1, metavar="W",
                   help="exits, early-exit: neighbours on each side whose uncertainty counts (default: 1)")
    p.add_argument("--skipped-as-keys", action="store_true",
                   help="exits, early-exit: tokens that left still serve as keys and values (the original method)")
    p.add_argument("--seed", type=int, default=0, help="seed of the new weights, data order and sampling (default: 0)")
    p.add_argument("--save-steps", type=positive_int, default=50, metavar="N",
                   help="write a resumable checkpoint every N steps (default: 50)")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep a stage's Trainer checkpoints once its model folder is written (default: removed then; "
                        "they hold the optimizer state, several times the model's size)")
    p.add_argument("--logging-steps", type=positive_int, default=10, metavar="N",
                   help="log the training metrics every N steps (default: 10)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=train)
    return p


EARLY_EXIT_STAGES = ("exits", "self-sampling", "early-exit")
# Defaults of each stage (the recipe's values); a value given on the command line applies to every stage trained.
STAGE_DEFAULTS = {
    "finetune": dict(epochs=2.0, learning_rate=8e-5, batch_size=16, samples=8),
    "policy": dict(epochs=2.0, learning_rate=3e-3, batch_size=8, samples=8),  # as the main job's presets
    "joint": dict(epochs=1.0, learning_rate=2e-5, batch_size=8, samples=4),
    "capped": dict(epochs=1.0, learning_rate=2e-5, batch_size=8, samples=1),  # as the full preset's
    "exits": dict(epochs=3.0, learning_rate=2e-3, batch_size=16, samples=1),  # as `trbert wnut`
    "self-sampling": dict(epochs=2.0, learning_rate=3e-5, batch_size=16, samples=1),
}

@dataclass
class Stage:
    name: str  # finetune, policy or joint
    source: Path | str | None  # where it starts from (the backbone for finetune; None: the default backbone)
    out: Path
    teacher: Path | None = None


def stage_settings(args, stage: str, max_length: int):
    from ..training import StageSettings

    defaults = STAGE_DEFAULTS[stage]

    def pick(name, value):
        return defaults[name] if value is None else value

    extra = {}
    if args.no_progress:
        extra["disable_tqdm"] = True
    return StageSettings(
        epochs=pick("epochs", args.epochs), learning_rate=pick("learning_rate", args.lr),
        batch_size=pick("batch_size", args.batch_size), max_length=max_length,
        samples=pick("samples", args.samples), alpha=args.alpha, max_examples=args.max_examples,
        guide_rate=args.guide_rate if stage == "policy" else 0.0,
        seed=args.seed, save_steps=args.save_steps, logging_steps=args.logging_steps,
        keep_checkpoints=args.keep_checkpoints,
        attention_dropout=args.attention_dropout, bf16=args.bf16, extra=extra,
        head_learning_rate=getattr(args, "head_lr", None) if stage == "finetune" else None,
    )


def plan_stages(args) -> list[Stage]:
    """The stages to run, with their folders, after checking that the options fit them."""
    given = {option: getattr(args, attr) is not None for option, attr in
             [("--source", "source"), ("--teacher", "teacher"), ("--backbone", "backbone")]}
    allowed = {"finetune": {"--backbone"}, "policy": {"--source"}, "joint": {"--source", "--teacher"},
               "capped": {"--source", "--teacher"}, "all": {"--backbone"}, "exits": {"--source"}, "self-sampling": {"--source"},
               "early-exit": {"--backbone"}}[args.stage]
    for option, present in given.items():
        if present and option not in allowed:
            raise CommandError(f"{option} is not used with --stage {args.stage}")
    if args.reduction_layers is not None and args.stage not in ("policy", "all", "exits", "early-exit"):
        raise CommandError("--reduction-layers is set when the policy or the exits are trained "
                           "(--stage policy, all, exits or early-exit)")
    if (getattr(args, "max_keep_ratio", None) is not None) != (args.stage == "capped"):
        raise CommandError("--stage capped needs --max-keep-ratio" if args.stage == "capped" else
                           "--max-keep-ratio is set with --stage capped only")
    if getattr(args, "freeze_policies", False) and args.stage not in ("joint", "all"):
        raise CommandError("--freeze-policies is set with --stage joint or all only")
    if getattr(args, "tune_policies", False) and args.stage not in ("joint", "all"):
        raise CommandError("--tune-policies is set with --stage joint or all only")
    if getattr(args, "freeze_policies", False) and getattr(args, "tune_policies", False):
        raise CommandError("--freeze-policies and --tune-policies exclude each other")
    if getattr(args, "head_lr", None) is not None and args.stage not in ("finetune", "all"):
        raise CommandError("--head-lr is set with --stage finetune or all only (it is the fine-tune's)")
    if args.max_drop is not None:
        if args.stage != "all":
            raise CommandError("--max-drop trains the whole recipe to a budget: use it with --stage all")
        if args.task != "classification":
            raise CommandError("--max-drop scores candidates by accuracy: it trains classifiers only")
    elif args.alphas is not None or args.validation is not None:
        raise CommandError("--alphas and --validation belong to --max-drop (training to an accuracy budget)")
    if args.stage in EARLY_EXIT_STAGES and args.task != "token-classification":
        raise CommandError(f"--stage {args.stage} is token-level early exit: use it with --task token-classification")
    out = Path(args.out)
    if args.stage == "all" and args.max_drop is not None:
        return [Stage("finetune", args.backbone, out / "finetune")]  # then the sweep (`train_to_budget`)
    if args.stage == "all":
        return [
            Stage("finetune", args.backbone, out / "finetune"),
            Stage("policy", out / "finetune", out / "policy"),
            Stage("joint", out / "policy", out / "joint", teacher=out / "finetune"),
        ]
    if args.stage == "early-exit":
        return [
            Stage("finetune", args.backbone, out / "finetune"),
            Stage("exits", out / "finetune", out / "exits"),
            Stage("self-sampling", out / "exits", out / "self-sampling"),
        ]
    if args.stage == "finetune":
        return [Stage("finetune", args.backbone, out)]
    if not given["--source"]:
        what = {"policy": "a finetune folder", "joint": "a policy folder", "capped": "a joint folder",
                "exits": "a finetune folder",
                "self-sampling": "an exits folder"}[args.stage]
        raise CommandError(f"--stage {args.stage} needs --source ({what})")
    if args.stage in ("policy", "exits", "self-sampling"):
        return [Stage(args.stage, Path(args.source), out)]
    if not given["--teacher"]:
        raise CommandError(f"--stage {args.stage} needs --teacher (the finetune folder, whose logits it distils)")
    return [Stage(args.stage, Path(args.source), out, teacher=Path(args.teacher))]


def train(args) -> int:
    from .. import training

    return _train(args, training)


def _train(args, training) -> int:
    stages = plan_stages(args)
    if args.no_progress:
        quiet_progress()
    data: Labelled | None = None  # loaded when a stage first needs it (and again when its classes differ)
    for stage in stages:
        log_path = training.log_path(stage.out)
        if stage.name == "finetune":
            from ..configuration import default_backbone

            source = resolve_backbone(str(stage.source)) if stage.source else default_backbone()
            config = load_config(model_folder(source, "--backbone"))
            classes = None
        else:
            source = str(model_folder(stage.source, "--source"))
            config = load_config(Path(source))
            if stage.name in ("joint", "capped"):
                if config.model_type != "trbert" or getattr(config, "selection", None) != "policy":
                    what, by = ("a policy", "policy") if stage.name == "joint" else ("a joint", "joint")
                    raise CommandError(f"--source {source}: a {config.model_type!r} model without keep policies, "
                                       f"not {what} folder (a trbert model written by --stage {by})")
                teacher = load_config(model_folder(stage.teacher, "--teacher"))
                if teacher.num_labels != config.num_labels or label_names(teacher) != label_names(config):
                    raise CommandError(f"--teacher {stage.teacher} has the classes "
                                       f"{label_names(teacher) or teacher.num_labels} but --source {source} "
                                       f"{label_names(config) or config.num_labels}")
            if args.reduction_layers is not None:
                from ..configuration import check_reduction_layers

                try:
                    check_reduction_layers(args.reduction_layers, config.num_hidden_layers)
                except ValueError as error:
                    raise CommandError(f"--reduction-layers: {error} ({source})") from None
            classes = label_names(config)
        if data is None or (classes is not None and data.names != classes):
            data = load_task_data(args.task, args.data, "train", args.text_column, args.label_column, labels=classes)
            dataset = data.dataset
            if args.max_drop is not None:  # held out before the fine-tune sees any of it
                dataset, validation = _validation_split(args, dataset, data.names)
            if args.max_examples is not None:  # a seeded random subset, not the first rows (BBC's are sorted by topic)
                dataset = dataset.shuffle(seed=args.seed)
        settings = stage_settings(args, stage.name, fit_max_length(args.max_length, config, source))
        what = f", {len(data.names)} {'tags' if args.task == 'token-classification' else 'classes'}" if data.names else ""
        done = training.stage_done(stage.out)  # kept when trained from the same (the stage checks), else refused
        if not done:
            say(f"{stage.name}: training {source} -> {stage.out} on {data.description} "
                f"({min(len(dataset), args.max_examples or len(dataset))} examples{what})")
        if stage.name == "finetune":
            training.finetune(source, dataset, stage.out, settings, data.names, task=args.task)
        elif stage.name == "policy":
            overrides = {"keep_rule": args.keep_rule, "keep_first_segment": args.protect_question,
                         "reduction_layers": reduction_layers(args, config)}
            training.train_policy(source, dataset, stage.out, settings, task=args.task, **overrides)
        elif stage.name == "exits":
            overrides = {"exit_threshold": args.exit_threshold, "exit_window": args.exit_window,
                         "skipped_as_keys": args.skipped_as_keys}
            if args.reduction_layers is not None:
                overrides["reduction_layers"] = args.reduction_layers
            training.train_exits(source, dataset, stage.out, settings, **overrides)
        elif stage.name == "self-sampling":
            if getattr(config, "selection", None) != "early_exit":
                raise CommandError(f"--source {source}: not an early-exit model (write one with --stage exits)")
            training.train_exits(source, dataset, stage.out, settings, self_sampling=True)
        elif stage.name == "capped":
            training.train_capped(source, str(stage.teacher), dataset, stage.out, settings, args.max_keep_ratio,
                                  task=args.task)
        else:
            training.train_joint(source, str(stage.teacher), dataset, stage.out, settings, task=args.task,
                                 freeze_policies=freeze_policies(args))
        if done:
            say(f"{stage.name}: {stage.out} is complete, trained from the same data and options: skipped")
            if not log_path.exists() and is_main_process():
                training.write_log(stage.out)
        else:
            say(f"{stage.name}: wrote {stage.out} (metrics per logging step in {log_path})")
    if args.max_drop is not None:
        _train_to_budget(args, stages[0].out, dataset, validation, settings.max_length)
    return 0


def _train_to_budget(args, full_dir: Path, train_data, validation, max_length: int) -> None:
    """The sweep of `--max-drop` after the fine-tune: candidates, their scores, the kept one."""
    from ..budget import CHOICE_FILE, DEFAULT_ALPHAS, train_to_budget

    overrides = {"keep_rule": args.keep_rule, "keep_first_segment": args.protect_question,
                 "reduction_layers": reduction_layers(args, load_config(full_dir))}
    chosen = train_to_budget(
        str(full_dir), train_data, validation, args.out, args.max_drop,
        stage_settings(args, "policy", max_length), stage_settings(args, "joint", max_length),
        alphas=args.alphas or DEFAULT_ALPHAS, freeze_policies=freeze_policies(args),
        progress=not args.no_progress, say=say, **overrides).chosen
    say(f"kept: alpha={chosen.alpha:g}, {chosen.folder} ({100 * chosen.score:.2f}% on validation, "
        f"{chosen.flops_speedup:.2f}x fewer FLOPs); the choice is recorded in {Path(args.out) / CHOICE_FILE}")


def reduction_layers(args, config) -> list[int]:
    """--reduction-layers, a TR source's own, or the recipe's placement for the task
    (`trbert.configuration.recipe_reduction_layers`)."""
    if args.reduction_layers is not None:
        return list(args.reduction_layers)
    if config.model_type == "trbert":  # a TR model's own steps
        return list(config.reduction_layers)
    from ..configuration import recipe_reduction_layers

    return recipe_reduction_layers(config.num_hidden_layers, args.task)


def freeze_policies(args) -> bool:
    """Whether the joint stage keeps the policies frozen: by default for classification (measured, as
    above), and where --freeze-policies asks; --tune-policies asks for the paper's joint stage."""
    if args.tune_policies:
        return False
    return args.freeze_policies or args.task == "classification"


def _validation_split(args, train_data, classes):
    """(training data, validation data) for --max-drop: a named data set's validation split; a file's
    --validation; else a seeded, stratified 10% held out of the training file."""
    if args.data is None or not args.data.lower().endswith((".csv", ".jsonl", ".json")):
        return train_data, load_task_data(args.task, args.data, "validation", labels=classes).dataset
    if args.validation is not None:
        return train_data, load_task_data(args.task, args.validation, "train", args.text_column, args.label_column,
                                          labels=classes).dataset
    if len(train_data) < 20:
        raise CommandError(f"--data {args.data}: {len(train_data)} examples are too few to hold 10% out for "
                           "validation: give --validation FILE")
    try:
        parts = train_data.train_test_split(test_size=0.1, seed=args.seed, stratify_by_column="label")
    except ValueError:  # a class too small to stratify
        parts = train_data.train_test_split(test_size=0.1, seed=args.seed)
    say(f"validation: {len(parts['test'])} examples of {args.data} held out (seed {args.seed}); "
        f"the candidates train on the other {len(parts['train'])}")
    return parts["train"], parts["test"]


