"""The TR-BERT training recipe, in three stages, each usable alone and built on `transformers.Trainer`.

1. `finetune`: the backbone with its task head, as a plain transformers model (the full model).
2. `train_policy`: the policy networks by REINFORCE, the backbone frozen. For each example K keep
   trajectories are sampled; reward = -task loss - alpha * mean over steps of the kept fraction;
   baseline = the mean reward of the example's K samples.
3. `train_joint`: every parameter, distillation from the stage-1 model's logits plus the same
   REINFORCE term.

Optionally, `train_capped` then tunes the backbone to a token budget (`max_keep_ratio`) tighter than
what the policies keep: the policies frozen and applied as at inference, distillation only.

Every stage takes `task=`: "classification" (the default), "question-answering" or
"token-classification" (`trbert.tasks`).

Each stage writes Trainer checkpoints (resumable after an interruption: a run picks up from the
last complete one) and, at its end, its model folder atomically: a killed run never leaves a
folder that half-loads. Runs as one process or several (`torchrun`, `accelerate launch`).
"""

import hashlib
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import (AutoTokenizer, DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments,
                          set_seed)

from ..hardware import instruction_set, native_bfloat16
from ..tasks import IGNORE, Task, get_task
from ..tasks.classification import micro_f1
from .checkpoints import last_complete_checkpoint, reuse_stage, save_atomically, stage_record, write_log
from .trainers import TEACHER_LOGITS, ExitTrainer, FinetuneTrainer, FrozenPolicyTrainer, ReductionTrainer


@dataclass
class StageSettings:
    """Hyper-parameters of one stage (defaults: a short run; the main job's presets are in
    `trbert.benchmarks.bbc`)."""

    epochs: float = 1.0
    learning_rate: float = 5e-5
    batch_size: int = 16
    max_length: int = 512
    samples: int = 8  # K trajectories per example (policy and joint stages)
    alpha: float = 1.0  # weight of the length penalty (policy and joint stages)
    guide_rate: float = 0.0  # policy stage: imitation warm-up for this fraction of the steps (0: none)
    max_examples: int | None = None  # train on the first examples only (None: all)
    seed: int = 0
    # Dropout on the attention probabilities while training (None: the checkpoint's own, 0.1 in BERT).
    # At long inputs on CPU, drawing a mask over every head's n x n scores is much of a step's time.
    attention_dropout: float | None = None
    # Mixed precision: matrix products in bfloat16 under autocast, weights and optimizer state in fp32
    # (transformers' `bf16`). Fast only where the hardware computes bfloat16 natively (see docs/RESULTS.md).
    bf16: bool = False
    # Fine-tune only: the learning rate of the task head (pooler and classifier), None: `learning_rate`.
    # A new head starts from random weights and may learn slowly at the backbone's rate.
    head_learning_rate: float | None = None
    save_steps: int = 50
    logging_steps: int = 10
    # Keep the Trainer checkpoints (`<out>-checkpoints`) once the stage's model folder is complete; by default
    # they are removed then: they hold the optimizer state and are several times the model's size.
    keep_checkpoints: bool = False
    extra: dict = field(default_factory=dict)  # passed on to TrainingArguments


# Parts a stage adds to the model it starts from: the task head, the pooler of a sentence encoder, the
# policy networks, the early-exit classifiers. Their weights are new by design.
NEW_PARTS = ("classifier.", "qa_outputs.", "pooler.", ".policy.", ".exits.")


def _no_load_report(record: logging.LogRecord) -> bool:
    return "LOAD REPORT" not in record.getMessage()


def _stage_model(model_class, source: str, settings: StageSettings, **overrides):
    """The model a stage trains, loaded from `source` with the stage's config overrides and dropout.
    Seeded first: its new weights (a task head, policy networks, exit classifiers) follow the stage's
    seed, not what ran before in the process. transformers' load report is silenced: the stage's own new
    parts are expected; any other weight missing from the checkpoint gets a one-line notice."""
    if settings.attention_dropout is not None:
        if not 0.0 <= settings.attention_dropout < 1.0:
            raise ValueError(f"attention_dropout must be in [0, 1), got {settings.attention_dropout}")
        overrides["attention_probs_dropout_prob"] = settings.attention_dropout
    set_seed(settings.seed)
    reports = logging.getLogger("transformers.modeling_utils")  # a filter: its level steers what transformers checks
    reports.addFilter(_no_load_report)
    try:
        model, info = model_class.from_pretrained(source, output_loading_info=True, **overrides)
    finally:
        reports.removeFilter(_no_load_report)
    surprising = [key for key in info["missing_keys"] if not any(part in f".{key}" for part in NEW_PARTS)]
    if surprising and int(os.environ.get("RANK", "0")) == 0:
        print(f"note: {source} lacks {len(surprising)} weight(s) outside the stage's new parts, newly initialised: "
              f"{', '.join(sorted(surprising)[:5])}{' ...' if len(surprising) > 5 else ''}", file=sys.stderr)
    return model


# ---------------------------------------------------------------------------- data
def subset(dataset, max_examples: int | None, seed: int = 0):
    """A seeded random subset of `max_examples` rows (all rows when None), in a fixed order."""
    if max_examples is None or max_examples >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(max_examples))


def tokenize_dataset(dataset, tokenizer, max_length: int, max_examples: int | None = None,
                     task: str | Task = "classification", seed: int = 0):
    """The task's model inputs and labels for (a seeded subset of) `dataset`."""
    return get_task(task).features(subset(dataset, max_examples, seed), tokenizer, max_length)


class Collator(DataCollatorWithPadding):
    """Pads the tokenizer's fields and per-token labels (lists of ints, with -100); stacks the others as
    they are (class ids, multi-hot float vectors, answer positions)."""

    def __call__(self, features):
        other = {k: [f.pop(k) for f in features] for k in list(features[0]) if k not in
                 ("input_ids", "attention_mask", "token_type_ids")}
        batch = super().__call__(features)
        width = batch["input_ids"].shape[1]
        for key, values in other.items():
            if isinstance(values[0], list) and values[0] and isinstance(values[0][0], int):  # per-token labels
                values = [v + [IGNORE] * (width - len(v)) for v in values]
            batch[key] = torch.tensor(values)
        return batch


_TEACHER_MEMO: dict = {}


def teacher_logits(teacher: str, train, tokenizer, task: str | Task = "classification", batch_size: int = 16,
                   progress: bool = True) -> torch.Tensor:
    """[N, C] the logits of the model in the folder `teacher` (in eval mode) for each row of the tokenized
    training set `train`. Distillation takes them from here instead of running the teacher on every
    batch: once per teacher and training set in a process, however many epochs and stages use them
    (the joint stages of a recipe share one teacher). Tasks with one logit vector per example only."""
    task = get_task(task)
    if not task.per_example_logits:
        raise ValueError(f"task {task.name!r} has per-token teacher outputs: they are computed batch by batch")
    folder = Path(teacher)
    inputs = train.select_columns([k for k in ("input_ids", "attention_mask", "token_type_ids") if k in train.column_names])
    content = hashlib.sha1()  # the same rows, whichever stage tokenized them
    for name in inputs.column_names:
        for row in inputs[name]:
            content.update(np.asarray([len(row), *row], dtype=np.int64).tobytes())
    stamp = max(f.stat().st_mtime_ns for f in folder.iterdir()) if folder.is_dir() else None  # rewritten: anew
    key = (str(teacher), stamp, content.hexdigest())
    if key not in _TEACHER_MEMO:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model = task.auto_class.from_pretrained(teacher).to(device).eval()
        lengths = [len(ids) for ids in inputs["input_ids"]]
        order = sorted(range(len(inputs)), key=lengths.__getitem__)  # batches of similar lengths: little padding
        collate, logits = Collator(tokenizer), [None] * len(inputs)
        with torch.inference_mode():
            for start in tqdm(range(0, len(order), batch_size), desc="teacher logits", disable=not progress):
                rows = order[start:start + batch_size]
                batch = collate([inputs[i] for i in rows])
                out = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu()
                for i, row in zip(rows, out):
                    logits[i] = row
        _TEACHER_MEMO[key] = torch.stack(logits)
    return _TEACHER_MEMO[key]


def _training_args(folder: Path, s: StageSettings, **overrides) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(folder),
        per_device_train_batch_size=s.batch_size,
        num_train_epochs=s.epochs,
        learning_rate=s.learning_rate,
        warmup_steps=0.1,
        weight_decay=0.01,
        save_strategy="steps",
        save_steps=s.save_steps,
        save_total_limit=2,
        logging_steps=s.logging_steps,
        report_to=[],
        seed=s.seed,
        data_seed=s.seed,
        remove_unused_columns=False,
        # Our losses are per-batch means; averaging "tokens" across processes would scale them by the world size.
        average_tokens_across_devices=False,
        use_cpu=not torch.cuda.is_available(),
        ddp_backend="gloo" if _distributed() and not torch.cuda.is_available() else None,
        bf16=mixed_precision(s.bf16),
        **{**s.extra, **overrides},
    )


_NOTED: set = set()


def mixed_precision(asked: bool) -> bool:
    """bfloat16 mixed precision where it was asked for and the hardware computes bfloat16 natively; elsewhere
    fp32, with a one-line notice (there bfloat16 is emulated)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if not asked or native_bfloat16(device):
        return asked
    if device not in _NOTED and int(os.environ.get("RANK", "0")) == 0:
        _NOTED.add(device)
        where = f"this CPU ({instruction_set()})" if device == "cpu" else "this GPU"
        print(f"note: {where} does not compute bfloat16 natively: training in fp32 instead of bfloat16 mixed "
              "precision", file=sys.stderr, flush=True)
    return False


def _distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


class _LogLastStep(TrainerCallback):
    """Log the last step too, so that a stage shorter than `logging_steps` still leaves a log."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == state.max_steps:
            control.should_log = True


def _train_and_save(trainer: Trainer, checkpoints: Path, tokenizer, out_dir: Path, settings: StageSettings,
                    record: dict) -> Path:
    """Train (resuming from the last complete checkpoint), then write the stage folder from the main
    process only (save_pretrained writes on rank 0 alone) while the others wait. The model's config records
    the length its texts were cut to (`trained_max_length`: what evaluating and predicting use by default);
    the folder, what the stage was trained from (`record`, see `reuse_stage`)."""
    trainer.add_callback(_LogLastStep())
    trainer.train(resume_from_checkpoint=last_complete_checkpoint(checkpoints))
    trainer.save_state()
    if trainer.is_world_process_zero():
        trainer.model.config.trained_max_length = settings.max_length
        save_atomically(trainer.model, tokenizer, out_dir, record)
        write_log(out_dir, trainer.state.log_history)
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero() and not settings.keep_checkpoints:
        shutil.rmtree(checkpoints, ignore_errors=True)
    return out_dir


# ---------------------------------------------------------------------------- stage 1
def finetune(backbone: str, dataset, out_dir: str, settings: StageSettings, label_names: list[str] | None = None,
             task: str | Task = "classification") -> Path:
    """Stage 1: fine-tune the backbone with the task's head. Writes `out_dir` (a plain transformers model).
    `label_names`: the classes (classification) or tags (token classification). A complete `out_dir` trained
    from the same is kept as it is (one trained from something else: StaleStageError)."""
    task = get_task(task)
    out_dir = Path(out_dir)
    record = stage_record("finetune", backbone, dataset, settings, task.name, label_names=label_names)
    if reuse_stage(out_dir, record):
        return out_dir
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    model = _stage_model(task.auto_class, backbone, settings, **task.model_kwargs(label_names))
    train = tokenize_dataset(dataset, tokenizer, settings.max_length, settings.max_examples, task, settings.seed)
    checkpoints = out_dir.with_name(out_dir.name + "-checkpoints")
    trainer = FinetuneTrainer(
        model=model, args=_training_args(checkpoints, settings), train_dataset=train,
        data_collator=Collator(tokenizer), head_learning_rate=settings.head_learning_rate,
    )
    return _train_and_save(trainer, checkpoints, tokenizer, out_dir, settings, record)


# ---------------------------------------------------------------------------- stages 2 and 3
def _reduction_stage(source: str, dataset, out_dir: str, settings: StageSettings, task: Task, teacher: str | None,
                     model_overrides: dict, record: dict) -> Path:
    out_dir = Path(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = _stage_model(task.tr_class, source, settings, **model_overrides)
    train = tokenize_dataset(dataset, tokenizer, settings.max_length, settings.max_examples, task, settings.seed)
    if isinstance(teacher, str | os.PathLike):
        train = _with_teacher_logits(train, teacher, tokenizer, task, settings)
    if teacher is None:
        for name, p in model.named_parameters():
            p.requires_grad = ".policy." in name
    checkpoints = out_dir.with_name(out_dir.name + "-checkpoints")
    trainer = ReductionTrainer(
        model=model, args=_training_args(checkpoints, settings), train_dataset=train,
        data_collator=Collator(tokenizer), task=task, samples=settings.samples, alpha=settings.alpha,
        frozen_backbone=teacher is None,
        teacher=teacher if teacher is None or isinstance(teacher, torch.nn.Module) else task.auto_class.from_pretrained(teacher),
        guide_rate=settings.guide_rate if teacher is None else 0.0,  # no warm-up in the joint stage
    )
    out = _train_and_save(trainer, checkpoints, tokenizer, out_dir, settings, record)
    model.requires_grad_(True)
    return out


def _with_teacher_logits(train, teacher, tokenizer, task: Task, settings: StageSettings):
    """`train` plus the teacher's logits as a column, for tasks whose teacher output is per example."""
    if not task.per_example_logits:
        return train
    logits = teacher_logits(str(teacher), train, tokenizer, task, progress=not settings.extra.get("disable_tqdm"))
    return train.add_column(TEACHER_LOGITS, logits.tolist())


def train_policy(source: str, dataset, out_dir: str, settings: StageSettings, task: str | Task = "classification",
                 **model_overrides) -> Path:
    """Stage 2: train the policies of the model in `source` (stage 1's folder, or any checkpoint with
    the task's head) by REINFORCE, the backbone frozen. `model_overrides` set TRBertConfig fields
    (e.g. `reduction_layers`)."""
    task = get_task(task)
    record = stage_record("policy", source, dataset, settings, task.name, **model_overrides)
    if reuse_stage(out_dir, record):
        return Path(out_dir)
    return _reduction_stage(source, dataset, out_dir, settings, task, None, model_overrides, record)


def train_joint(source: str, teacher: str, dataset, out_dir: str, settings: StageSettings,
                task: str | Task = "classification", freeze_policies: bool = False, **model_overrides) -> Path:
    """Stage 3: tune every parameter of the TR model in `source` (stage 2's folder), distilling from
    the model in `teacher` (stage 1's folder, or a module such as `trbert.evaluation.SegmentBaseline`, run
    on each batch) plus the REINFORCE term.

    `freeze_policies`: keep stage 2's policies as they are and tune only the backbone and head, by
    distillation with the keep decisions of inference (no sampling, no REINFORCE term). The model then
    keeps what stage 2 kept; the backbone learns to work from those tokens."""
    task = get_task(task)
    record = stage_record("joint", source, dataset, settings, task.name, teacher=teacher,
                          freeze_policies=freeze_policies, **model_overrides)
    if reuse_stage(out_dir, record):
        return Path(out_dir)
    if freeze_policies:
        return _frozen_policy_stage(source, teacher, dataset, out_dir, settings, task, model_overrides, record)
    return _reduction_stage(source, dataset, out_dir, settings, task, teacher, model_overrides, record)


def train_capped(source: str, teacher: str, dataset, out_dir: str, settings: StageSettings, max_keep_ratio: float,
                 task: str | Task = "classification") -> Path:
    """After stage 3: cap the tokens every step keeps at `max_keep_ratio` of each example's tokens (the
    policies' best-scoring ones) and tune the backbone and head to the cap by distillation from
    `teacher` (stage 1's folder), the policies frozen. The cap is saved in the model's config. A cap
    applied without this stage costs more accuracy: the backbone was tuned on what the policies keep."""
    task = get_task(task)
    record = stage_record("capped", source, dataset, settings, task.name, teacher=teacher, max_keep_ratio=max_keep_ratio)
    if reuse_stage(out_dir, record):
        return Path(out_dir)
    return _frozen_policy_stage(source, teacher, dataset, out_dir, settings, task, {"max_keep_ratio": max_keep_ratio},
                                record)


def _frozen_policy_stage(source: str, teacher, dataset, out_dir: str, settings: StageSettings, task: Task,
                         model_overrides: dict, record: dict) -> Path:
    out_dir = Path(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = _stage_model(task.tr_class, source, settings, **model_overrides)
    for name, p in model.named_parameters():
        p.requires_grad = ".policy." not in name
    train = tokenize_dataset(dataset, tokenizer, settings.max_length, settings.max_examples, task, settings.seed)
    if isinstance(teacher, str | os.PathLike):
        train = _with_teacher_logits(train, teacher, tokenizer, task, settings)
        teacher = task.auto_class.from_pretrained(teacher)
    checkpoints = out_dir.with_name(out_dir.name + "-checkpoints")
    trainer = FrozenPolicyTrainer(
        model=model, args=_training_args(checkpoints, settings), train_dataset=train,
        data_collator=Collator(tokenizer), task=task, teacher=teacher,
    )
    out = _train_and_save(trainer, checkpoints, tokenizer, out_dir, settings, record)
    model.requires_grad_(True)
    return out


# ---------------------------------------------------------------------------- re-tuning a head on fixed states
def fit_head(head: torch.nn.Module, logits_of, train: tuple, dev: tuple, multi_label: bool = False,
             steps: int = 400, lr: float = 1e-3, seed: int = 0) -> float:
    """Train `head`'s parameters on fixed input states (what the frozen layers below it give, computed
    once): full-batch AdamW on `train` = (states, targets), `logits_of(states)` running the head. The
    parameters of the step with the best score on `dev` are kept: accuracy, or micro F1 of sigmoid >= 0.5
    for `multi_label` (targets multi-hot). Returns that score."""
    (x, y), (x_dev, y_dev) = train, dev
    loss_fn = (lambda z, t: F.binary_cross_entropy_with_logits(z, t.float())) if multi_label else F.cross_entropy

    def score() -> float:
        with torch.no_grad():
            z = logits_of(x_dev)
        if multi_label:
            return micro_f1(z.sigmoid() >= 0.5, y_dev.bool())
        return (z.argmax(-1) == y_dev).double().mean().item()

    head.requires_grad_(True)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    best = (-1.0, None)
    for step in range(steps + 1):
        if step % 20 == 0 or step == steps:
            value = score()
            if value > best[0]:
                best = (value, {k: v.detach().clone() for k, v in head.state_dict().items()})
        if step == steps:
            break
        optimizer.zero_grad()
        loss_fn(logits_of(x), y).backward()
        optimizer.step()
    head.load_state_dict(best[1])
    return best[0]


# ---------------------------------------------------------------------------- early exit (token classification)
def train_exits(source: str, dataset, out_dir: str, settings: StageSettings, self_sampling: bool = False,
                **model_overrides) -> Path:
    """Token-level early exit for a token classifier. Without `self_sampling`: the internal classifiers
    of a model made from `source` (stage 1's folder), the backbone and head frozen. With it: every
    parameter of the early-exit model in `source` (the first call's folder), tokens leaving at random
    steps. `model_overrides` set TRBertConfig fields (exit_threshold, exit_window, skipped_as_keys, ...)."""
    out_dir = Path(out_dir)
    task = get_task("token-classification")
    record = stage_record("self-sampling" if self_sampling else "exits", source, dataset, settings, task.name,
                          **model_overrides)
    if reuse_stage(out_dir, record):
        return out_dir
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = _stage_model(task.tr_class, source, settings, selection="early_exit", **model_overrides)
    train = tokenize_dataset(dataset, tokenizer, settings.max_length, settings.max_examples, task, settings.seed)
    if not self_sampling:
        for name, p in model.named_parameters():
            p.requires_grad = ".exits." in name
    checkpoints = out_dir.with_name(out_dir.name + "-checkpoints")
    trainer = ExitTrainer(model=model, args=_training_args(checkpoints, settings), train_dataset=train,
                          data_collator=Collator(tokenizer), self_sampling=self_sampling)
    out = _train_and_save(trainer, checkpoints, tokenizer, out_dir, settings, record)
    model.requires_grad_(True)
    return out
