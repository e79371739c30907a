"""The rivals benchmark: every common way of speeding up the encoder, on the same data, machine and model,
measured in one run (`trbert bench`).

Methods (names as in the results files):
    full       the fine-tuned model, plain Hugging Face transformers (SDPA attention), fp32
    ort_fp32   the same model in ONNX Runtime; ort_int8: with its weights dynamically quantized to int8
    int8       PyTorch dynamic int8 quantization of the linear layers
    truncation the full model on the first k tokens only
    layers     the first k layers of the fine-tuned model, pooler and classifier re-tuned
    attention_topk  keep the tokens that receive the most attention, a fixed fraction per step
               (PoWER-BERT / Length-Adaptive style), training-free or after a short fine-tune
    ltp        a threshold on attention received per step, learned with a soft mask and a length
               penalty (LTP style), then applied as a hard rule with the tokens removed
    tr         TR-BERT (the learned keep policies) at several alphas; tr_int8: the same, int8
    ort_tr     TR-BERT exported to one ONNX graph (`trbert export`) in ONNX Runtime; ort_tr_int8: int8

Everything a method needs is trained once into the run folder (the main job's stages for the full and
TR models, `rivals/` for the others), so a re-run only measures. Measurement: accuracy on the whole
test split (batch 32) against the full model with a paired bootstrap; multiply-adds per example from
the lengths each method actually ran on; wall clock at batch 1 (latency) and batch 32 (throughput) on
test articles spread evenly over the split, all methods interleaved round by round so that drift of the machine hits
them alike (median over rounds), each timed pass after one untimed batch of its own (the pass before it
was another method's); peak memory: the resident memory a first batch of 32 adds on top of
the loaded model (measured before anything else runs a large batch).
"""

from __future__ import annotations

import ctypes
import json
import os
import shlex
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trbert import TRBertForSequenceClassification, evaluation
from trbert.configuration import default_backbone
from trbert.training import StageSettings, finetune, fit_head, save_atomically, stage_done

from . import bbc as main_job
from .report import diff_cell, kept_cell, markdown_table, provenance, save_png, speedup_cell, update_section

BENCHMARK = "bbc_rivals"  # on BBC News; on another data set "<its slug>_rivals"
TR_FAMILY = ("tr",)  # the methods whose curve the targets are about
TR_VARIANTS = ("tr", "tr_int8", "ort_tr", "ort_tr_int8")  # TR-BERT as PyTorch and ONNX Runtime run it
EXPORTED = {"ort_tr": "tr", "ort_tr_int8": "tr_int8"}  # a TR model in ONNX Runtime: the PyTorch one it must equal
# Checked against the fp32 TR model as well: how far each int8 implementation moves the decisions.
INT8_TR = ("tr_int8", "ort_tr_int8")


# ---------------------------------------------------------------------------- presets
@dataclass
class BenchPreset:
    name: str
    main_job: str  # the main job's preset that gives the max length, the full model and the TR models
    data: str = "bbc"  # a key of the main job's CORPORA
    alphas: list[float] | None = None  # TR alphas (None: the main job's)
    layouts: dict | None = None  # TR models with other reduction layers (None: the main job's)
    truncation: list[int] = field(default_factory=list)
    layers: list[int] = field(default_factory=list)  # fewer layers: k
    topk: list[tuple[float, ...]] = field(default_factory=list)  # attention top-k schedules, training-free
    topk_tuned: list[tuple[float, ...]] = field(default_factory=list)  # ... also after a short fine-tune
    tune: StageSettings = field(default_factory=lambda: StageSettings(epochs=1, learning_rate=3e-5, batch_size=8))
    ltp_lambdas: list[float] = field(default_factory=list)  # one LTP model per length penalty
    ltp_steps: int = 100
    ltp_batch_size: int = 8
    ltp_tuned: bool = False  # also a short fine-tune with the hard thresholds in place
    # TR models also run exported in ONNX Runtime (fp32 and int8): those of these alphas (None: every one)
    ort_tr_alphas: list[float] | None = None
    test_examples: int | None = None  # accuracy on this many test texts spread over the split (None: all)
    timed_b1: int = 32  # articles timed at batch 1
    timed_b32: int = 64  # articles timed at batch 32
    rounds: int = 3  # timing rounds after a warm-up round


PRESETS = {
    # 128 tokens, two TR alphas, the rivals without fine-tunes.
    "quick": BenchPreset(
        name="quick", main_job="quick", alphas=[0.2, 1.0], layouts={},
        truncation=[16, 32, 64], layers=[1, 2, 3],
        topk=[(0.5, 0.25), (0.3, 0.12)], ltp_lambdas=[0.5], ltp_steps=60,
        timed_b1=32, timed_b32=64, rounds=3,
    ),
    # The results page: full-length articles, the main job's full sweep (its models from `trbert run
    # --preset full`, or trained here), every rival.
    "full": BenchPreset(
        name="full", main_job="full",
        truncation=[32, 64, 128, 256], layers=[1, 2, 3, 4],
        topk=[(0.5, 0.25), (0.35, 0.1), (0.25, 0.06)], topk_tuned=[(0.35, 0.1)],
        tune=StageSettings(epochs=1, learning_rate=3e-5, batch_size=8, max_examples=600),
        ltp_lambdas=[0.2, 1.0], ltp_steps=120, ltp_tuned=True, ort_tr_alphas=[1.0, 2.0],
        timed_b1=48, timed_b32=96, rounds=3,
    ),
    # Deployment alone: the full preset's model with steps at layers 0,3 and alpha 2 (its folder is the
    # full preset's) and the same recipe with alpha 8 (a stronger length penalty: fewer tokens kept), in
    # PyTorch and ONNX Runtime, fp32 and int8, against the full model in both runtimes and truncation;
    # no rival is trained.
    "onnx": BenchPreset(
        name="onnx", main_job="full", alphas=[], layouts={(0, 3): [2.0, 8.0]}, ort_tr_alphas=[2.0, 8.0],
        timed_b1=48, timed_b32=96, rounds=3,
    ),
}

# 20 Newsgroups (the main job's 20newsgroups preset, 256 tokens): truncation, fewer layers, attention
# top-k (and one schedule fine-tuned) and LTP; four of the main job's TR models; accuracy on 1,000 of
# the 7,528 test posts, so that it runs in well under an hour.
NEWSGROUPS_PRESETS = {
    "full": BenchPreset(
        name="full", main_job="full", data="20newsgroups",
        alphas=[1.0], layouts={(0, 3): [1.0, 2.0, 3.0]},
        truncation=[32, 64, 128], layers=[1, 2, 3],
        topk=[(0.5, 0.25), (0.35, 0.1), (0.25, 0.06)], topk_tuned=[(0.35, 0.1)],
        tune=StageSettings(epochs=1, learning_rate=3e-5, batch_size=8, max_examples=800),
        ltp_lambdas=[1.0], ltp_steps=120, ltp_tuned=False, ort_tr_alphas=[2.0],
        test_examples=1000, timed_b1=48, timed_b32=96, rounds=3,
    ),
}


def presets(data: str = "bbc") -> dict[str, BenchPreset]:
    """The bench's presets on `data` (a key of the main job's CORPORA)."""
    main_job.presets(data)  # checks the name
    return {"bbc": PRESETS, "20newsgroups": NEWSGROUPS_PRESETS}[data]


def benchmark_name(preset: BenchPreset) -> str:
    """The name of the preset's results: bbc_rivals (BBC News), 20news_rivals, ..."""
    return BENCHMARK if preset.data == "bbc" else f"{main_job.CORPORA[preset.data].slug}_rivals"


def section_key(preset: BenchPreset) -> str:
    return f"rivals-{preset.name}" if preset.data == "bbc" else f"rivals-{main_job.CORPORA[preset.data].slug}-{preset.name}"


# ---------------------------------------------------------------------------- methods
@dataclass
class Method:
    """One way of running the classifier: `forward(**batch)` -> an output with `logits` (and `kept_lengths` for a
    TR model)."""

    method: str
    setting: str
    forward: Callable
    macs: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]  # (lengths, kept) -> [N] multiply-adds
    max_length: int
    info: dict = field(default_factory=dict)  # extra fields for the record


def torch_method(method: str, setting: str, model, max_length: int, **info) -> Method:
    model.eval()
    return Method(method, setting, model, lambda lengths, kept: evaluation.model_macs(model, lengths, kept),
                  max_length, info)


# ---------------------------------------------------------------------------- rivals that need training
@contextmanager
def _quiet_loading():
    """transformers' load report silenced (for checkpoints loaded with fewer layers on purpose)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def fewer_layers(full_dir: Path, k: int, train, validation, max_length: int, out: Path, seed: int = 0,
                 steps: int = 400, lr: float = 1e-3, progress: bool = True) -> Path:
    """The first k layers of the fine-tuned model; the pooler and classifier re-tuned on the [CLS] state
    after layer k (the encoder frozen, so its states are computed once). The step with the best
    validation accuracy is kept."""
    if stage_done(out):
        return out
    tokenizer = AutoTokenizer.from_pretrained(full_dir)
    with _quiet_loading():  # the weights of the dropped layers go unused, as intended
        model = AutoModelForSequenceClassification.from_pretrained(full_dir, num_hidden_layers=k).eval()

    def cls_states(dataset):
        states = []
        batches = evaluation.encoded_batches(tokenizer, list(dataset["text"]), max_length, 32)
        with torch.no_grad():  # (not inference mode: the head trains on these states)
            for batch in tqdm(batches, total=-(-len(dataset) // 32), desc=f"layers {k}: states", disable=not progress):
                states.append(model.bert(**batch).last_hidden_state[:, :1])
        return torch.cat(states), torch.tensor(dataset["label"])

    model.requires_grad_(False)
    head = torch.nn.ModuleDict({"pooler": model.bert.pooler, "classifier": model.classifier})
    fit_head(head, lambda states: model.classifier(model.bert.pooler(states)), cls_states(train),
             cls_states(validation), steps=steps, lr=lr, seed=seed)
    model.requires_grad_(True)
    return save_atomically(model, tokenizer, out)


def selection_model(full_dir: Path, out: Path, **selection) -> Path:
    """A TR checkpoint of the fine-tuned weights whose steps use a training-free selection rule."""
    if not stage_done(out):
        model = TRBertForSequenceClassification.from_pretrained(full_dir, **selection)
        save_atomically(model, AutoTokenizer.from_pretrained(full_dir), out)
    return out


def tuned(source: Path, out: Path, train, preset: BenchPreset, max_length: int, seed: int, label_names) -> Path:
    """A short fine-tune of a model with its selection rule in place (tokens removed in training too)."""
    if not stage_done(out):
        finetune(str(source), train, out, replace(preset.tune, max_length=max_length, seed=seed), label_names)
    return out


def ltp_model(full_dir: Path, out: Path, train, lambda_: float, preset: BenchPreset, max_length: int,
              layers: list[int], seed: int, progress: bool) -> Path:
    """LTP: thresholds on attention received learned with a soft mask (backbone frozen), then a hard rule.
    Scores average 1/n over an n-token input, so the starting threshold and the softness are set
    against 1/max_length."""
    if stage_done(out):
        return out
    from trbert.strategies.ltp import apply_thresholds, learn_thresholds
    from trbert.training import tokenize_dataset

    tokenizer = AutoTokenizer.from_pretrained(full_dir)
    model = TRBertForSequenceClassification.from_pretrained(full_dir, reduction_layers=layers,
                                                            selection="attention_threshold",
                                                            score_thresholds=[0.0] * len(layers))
    data = tokenize_dataset(train, tokenizer, max_length, seed=seed)
    thresholds = learn_thresholds(model, data, steps=preset.ltp_steps, lambda_=lambda_,
                                  temperature=0.2 / max_length, init=0.5 / max_length,
                                  batch_size=preset.ltp_batch_size, seed=seed, progress=progress)
    apply_thresholds(model, thresholds)
    return save_atomically(model, tokenizer, out)


def prepare(preset: BenchPreset, run_dir: Path, backbone: str, seed: int, progress: bool) -> dict:
    """Train (or find) everything the preset measures; returns the folders."""
    base = main_job.presets(preset.data)[preset.main_job]
    changes = {}
    if preset.alphas is not None:
        changes["alphas"] = list(preset.alphas)
    if preset.layouts is not None:
        changes["layouts"] = dict(preset.layouts)
    rp = replace(base, **changes)
    trained = rp.trained()  # the bench's own alphas and layouts may leave out a model the main job caps
    rp = replace(rp, capped={key: caps for key, caps in rp.capped.items() if (tuple(key[0]), key[1]) in trained})
    if not progress:
        rp = main_job.quiet(rp)
    bbc = main_job.CORPORA[preset.data].load(seed=0)  # (named bbc, whichever data set it is)
    label_names = bbc["train"].features["label"].names
    folders = main_job.train_all(rp, run_dir, backbone, bbc["train"], label_names, seed)
    full_dir, rivals = folders["full"], run_dir / "rivals"
    layers = list(rp.reduction_layers or [1, 3])
    folders["layers"] = {k: fewer_layers(full_dir, k, bbc["train"], bbc["validation"], rp.max_length,
                                         rivals / f"layers-{k}", seed, progress=progress) for k in preset.layers}
    tune_settings = preset if progress else replace(preset, tune=main_job.quiet_stage(preset.tune))
    topk = {}
    for fractions in dict.fromkeys([*preset.topk, *preset.topk_tuned]):
        name = ",".join(f"{f:g}" for f in fractions)
        folder = selection_model(full_dir, rivals / f"topk-{name}", reduction_layers=layers,
                                 selection="attention_topk", keep_fractions=list(fractions))
        if fractions in preset.topk:
            topk[(fractions, False)] = folder
        if fractions in preset.topk_tuned:
            topk[(fractions, True)] = tuned(folder, rivals / f"topk-{name}-tuned", bbc["train"], tune_settings,
                                            rp.max_length, seed, label_names)
    folders["topk"] = topk
    ltp = {}
    for lambda_ in preset.ltp_lambdas:
        folder = ltp_model(full_dir, rivals / f"ltp-{lambda_:g}", bbc["train"], lambda_, preset, rp.max_length,
                           layers, seed, progress)
        ltp[(lambda_, False)] = folder
        if preset.ltp_tuned:
            ltp[(lambda_, True)] = tuned(folder, rivals / f"ltp-{lambda_:g}-tuned", bbc["train"], tune_settings,
                                         rp.max_length, seed, label_names)
    folders["ltp"] = ltp
    folders["onnx"] = onnx_models(full_dir, rivals / "onnx")
    folders["ort_tr"] = {}
    for alpha, layers, cap, folder in tr_models(folders):
        if preset.ort_tr_alphas is None or alpha in preset.ort_tr_alphas:
            name = f"{'' if layers is None else 'layers-' + '-'.join(map(str, layers)) + '-'}alpha-{alpha:g}" + (
                "" if cap is None else f"-cap-{cap:g}")
            folders["ort_tr"][(alpha, layers, cap)] = onnx_tr_models(folder, rivals / "onnx-tr" / name)
    folders["main_job"] = rp
    return folders


def tr_models(folders: dict) -> list[tuple]:
    """(alpha, reduction layers or None, cap or None, folder) of every TR model of the main job's folders."""
    trs = [(alpha, None, None, folder) for alpha, folder in folders["tr"].items()]
    trs += [(alpha, layers, None, folder) for (layers, alpha), folder in folders.get("layouts", {}).items()]
    trs += [(alpha, layers, cap, folder) for (layers, alpha, cap), folder in folders.get("capped", {}).items()]
    return trs


def onnx_tr_models(folder: Path, out: Path) -> dict:
    """A TR model exported to ONNX (fp32 and int8 folders, `trbert.deployment.export_folder`), once."""
    from trbert.deployment import export_folder
    from trbert.deployment.onnx import INT8_RECIPE, RECORD_FILE, TR_OUTPUTS

    exported = {}
    for kind in ("fp32", "int8"):
        target = out.with_name(f"{out.name}-{kind}")
        record = target / RECORD_FILE
        said = json.loads(record.read_text()) if record.is_file() else {}
        current = said.get("outputs") == list(TR_OUTPUTS["TRBertForSequenceClassification"]) and (
            kind == "fp32" or said.get("int8") == INT8_RECIPE)
        if not current:  # absent, or written by an export with other outputs or int8 recipe: exported again
            model = TRBertForSequenceClassification.from_pretrained(folder).eval()
            export_folder(model, AutoTokenizer.from_pretrained(folder), target, int8=kind == "int8")
        exported[kind] = target
    return exported


def onnx_models(full_dir: Path, out: Path) -> dict:
    from trbert.deployment import export_onnx, quantize_onnx_int8
    from trbert.deployment.onnx import INT8_RECIPE, int8_recipe

    fp32, int8 = out / "model.onnx", out / "model-int8.onnx"
    if not fp32.is_file():
        export_onnx(AutoModelForSequenceClassification.from_pretrained(full_dir).eval(), fp32)
    if not int8.is_file() or int8_recipe(int8) != INT8_RECIPE:
        quantize_onnx_int8(fp32, int8)
    return {"fp32": fp32, "int8": int8}


def build_methods(folders: dict, threads: int) -> list[Method]:
    """Every method to measure, the full model first."""
    from trbert.deployment import OnnxClassifier, OnnxTRModel, quantize_int8

    rp = folders["main_job"]
    n = rp.max_length
    full = AutoModelForSequenceClassification.from_pretrained(folders["full"]).eval()
    full_macs = lambda lengths, kept: evaluation.model_macs(full, lengths, None)  # noqa: E731
    methods = [torch_method("full", "fine-tuned, fp32", full, n)]
    for kind, path in folders["onnx"].items():
        session = OnnxClassifier(path, threads=threads)
        methods.append(Method(f"ort_{kind}", "ONNX Runtime", lambda s=session, **b: SimpleNamespace(logits=s(b)),
                              full_macs, n))
    methods.append(torch_method("int8", "dynamic int8 linears", quantize_int8(full), n))
    methods += [torch_method("truncation", f"first {k} tokens", full, k) for k in rp.truncation]
    for k, folder in folders["layers"].items():
        model = AutoModelForSequenceClassification.from_pretrained(folder)
        methods.append(torch_method("layers", f"first {k} layers", model, n))
    for (fractions, is_tuned), folder in folders["topk"].items():
        model = TRBertForSequenceClassification.from_pretrained(folder)
        setting = "keep " + ", ".join(f"{f:g}" for f in fractions) + (", fine-tuned" if is_tuned else ", training-free")
        methods.append(torch_method("attention_topk", setting, model, n))
    for (lambda_, is_tuned), folder in folders["ltp"].items():
        model = TRBertForSequenceClassification.from_pretrained(folder)
        thresholds = ", ".join(f"{t:.3g}" for t in model.config.score_thresholds)
        setting = f"lambda={lambda_:g} (thresholds {thresholds})" + (", fine-tuned" if is_tuned else "")
        methods.append(torch_method("ltp", setting, model, n))
    for alpha, layers, cap, folder in tr_models(folders):
        model = TRBertForSequenceClassification.from_pretrained(folder)
        where = "" if layers is None else f", steps at layers {','.join(map(str, layers))}"
        where += "" if cap is None else f", max_keep_ratio={cap:g}"
        methods.append(torch_method("tr", f"alpha={alpha:g}{where}", model, n))
        methods.append(torch_method("tr_int8", f"alpha={alpha:g}{where}", quantize_int8(model), n))
        for kind, exported in folders.get("ort_tr", {}).get((alpha, layers, cap), {}).items():
            session = OnnxTRModel.from_pretrained(exported, threads=threads)
            macs = lambda lengths, kept, m=model: evaluation.model_macs(m, lengths, kept)  # noqa: E731
            methods.append(Method("ort_tr" if kind == "fp32" else "ort_tr_int8", f"alpha={alpha:g}{where}",
                                  session, macs, n))
    return methods


# ---------------------------------------------------------------------------- measuring
def resident_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _release_free_memory() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak resident memory above the level at entry (MiB), sampled every millisecond in a thread:
    the working memory a forward pass adds on top of the loaded model. None where /proc is missing."""

    def __enter__(self):
        _release_free_memory()
        self.base = resident_bytes()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        if self.base is not None:
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, resident_bytes() or 0)

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.mib = None if self.base is None else round((max(self.peak, resident_bytes() or 0) - self.base) / 2**20, 1)


def _pass(method: Method, batches: Sequence) -> float:
    start = time.perf_counter()
    evaluation.forward_pass(method.forward, batches)
    return time.perf_counter() - start


def parity(exported: Method, reference: Method, batches: Sequence) -> dict:
    """How far an exported TR model is from the PyTorch model it was exported from, on every batch: the
    largest logit difference, the share of texts whose kept lengths are the same at every step, and the
    share of tokens with the same decision at every step (`kept_steps`)."""
    diff, same_texts, texts, same_tokens, tokens = 0.0, 0, 0, 0, 0
    with torch.inference_mode():
        for batch in batches:
            a, b = exported.forward(**batch), reference.forward(**batch)
            diff = max(diff, float((a.logits.float() - b.logits.float()).abs().max()))
            same_texts += int((a.kept_lengths == b.kept_lengths).all(1).sum())
            texts += len(b.kept_lengths)
            present = batch["attention_mask"].bool()
            same_tokens += int((a.kept_steps == b.kept_steps)[present].sum())
            tokens += int(present.sum())
    return {"against": reference.method, "max_abs_logit_diff": float(f"{diff:.3g}"),
            "kept_lengths_equal": round(same_texts / texts, 5), "decisions_equal": round(same_tokens / tokens, 5)}


def batch_invariance(alone: evaluation.Predictions, batched: evaluation.Predictions, indices: list[int]) -> dict:
    """Texts run one at a time (`alone`) against the same texts in batches (rows `indices` of `batched`):
    the largest logit difference, the share of texts with the same prediction and, for a model that
    selects tokens, the same kept lengths at every step."""
    a, b = alone.logits.float(), batched.logits[indices].float()
    check = {"texts": len(a), "max_abs_logit_diff": float(f"{float((a - b).abs().max()):.3g}"),
             "predictions_equal": round(float((alone.pred == batched.pred[indices]).float().mean()), 5)}
    if alone.kept_lengths is not None:
        same = (alone.kept_lengths == batched.kept_lengths[indices]).all(1)
        check["kept_lengths_equal"] = round(float(same.float().mean()), 5)
    return check


def measure(methods: list[Method], tokenizer, texts: list[str], labels: list[int], preset: BenchPreset,
            progress: bool = True) -> list[dict]:
    """One record per method and batch size (1 and 32); `methods[0]` is the full model."""
    labels_t = torch.tensor(labels)
    encodings = {}

    def batches(max_length, batch_size, n):
        key = (max_length, batch_size, n)
        if key not in encodings:
            subset = [texts[i] for i in evaluation.spread(len(texts), n)]
            encodings[key] = list(evaluation.encoded_batches(tokenizer, subset, max_length, batch_size))
        return encodings[key]

    # Peak memory first, while no method has run a large batch yet (ONNX Runtime keeps its memory arena
    # once grown): each method runs one short text, then one batch of 32 is measured.
    sizes = {1: preset.timed_b1, 32: preset.timed_b32}
    memory = []
    for m in tqdm(methods, desc="memory", disable=not progress):
        _pass(m, batches(m.max_length, 1, 1))
        with PeakMemory() as peak:
            _pass(m, batches(m.max_length, 32, min(sizes[32], len(texts)))[:1])
        memory.append(peak.mib)

    predictions = []
    for m in tqdm(methods, desc="accuracy", disable=not progress):
        predictions.append(evaluation.predict_encoded(m.forward, batches(m.max_length, 32, len(texts)), macs=m.macs))
    full = predictions[0]
    checks = {}  # per method: its parity with the PyTorch model it was exported from, and with fp32 TR
    timed_b1 = min(sizes[1], len(texts))
    for m, pred in zip(methods, predictions):
        against = {"parity": EXPORTED.get(m.method), "parity_fp32": "tr" if m.method in INT8_TR else None}
        references = {key: next((r for r in methods if r.method == name and r.setting == m.setting), None)
                      for key, name in against.items()}
        checks[id(m)] = {key: parity(m, reference, batches(m.max_length, 32, len(texts)))
                         for key, reference in references.items() if reference is not None}
        # The texts timed at batch 1, alone against in the accuracy run's batches of 32: an example's outputs
        # must not depend on its batch.
        alone = evaluation.predict_encoded(m.forward, batches(m.max_length, 1, timed_b1), macs=m.macs)
        checks[id(m)]["batch_invariance"] = batch_invariance(alone, pred, evaluation.spread(len(texts), timed_b1))

    # Wall clock: round 0 warms up; each later round times every method at both batch sizes, starting
    # from a different method each round. Each timed pass follows one untimed batch of the same method:
    # right after another method's pass, a pass runs slower for a while (a 3.4 ms-per-text ONNX Runtime
    # pass by 8-12% after a batch-32 pass), a larger share of a fast method's pass than of a slow one's.
    times = {(i, b): [] for i in range(len(methods)) for b in sizes}
    for r in tqdm(range(preset.rounds + 1), desc="timing rounds", disable=not progress):
        for j in range(len(methods)):
            i = (j + r) % len(methods)
            for b, n in sizes.items():
                timed = batches(methods[i].max_length, b, min(n, len(texts)))
                _pass(methods[i], timed[:1])
                seconds = _pass(methods[i], timed)
                if r > 0:
                    times[(i, b)].append(seconds)
    records = []
    for i, (m, pred) in enumerate(zip(methods, predictions)):
        comparison = evaluation.comparison(pred, full, labels_t)
        if i == 0:
            comparison.update(accuracy_diff=None, ci_low=None, ci_high=None)
        for b, n in sizes.items():
            n = min(n, len(texts))
            seconds, full_seconds = statistics.median(times[(i, b)]), statistics.median(times[(0, b)])
            records.append({
                **comparison,
                "method": m.method, "setting": m.setting,
                "kept_fraction": evaluation.kept_fraction(pred),
                "gflops_per_example": float(f"{2 * float(pred.macs.mean()) / 1e9:.4g}"),
                "wall_speedup": round(full_seconds / seconds, 3),
                "latency_ms": round(seconds / n * 1000, 2) if b == 1 else None,
                "throughput_per_s": round(n / seconds, 2) if b > 1 else None,
                "peak_mem_mb": memory[i] if b > 1 else None,
                "batch_size": b, "timed_examples": n, "n_examples": len(texts),
                "max_length": m.max_length, **m.info,
                **checks[id(m)],
            })
    return records


# ---------------------------------------------------------------------------- reading the results
def envelope(records: list[dict], family: Sequence[str], batch: int) -> list[dict]:
    """The points of `family` at `batch`, each above every point of the family that is faster."""
    points = sorted((r for r in records if r["method"] in family and r["batch_size"] == batch),
                    key=lambda r: -r["wall_speedup"])
    best, kept = -1.0, []
    for p in points:
        if p["accuracy"] > best:
            kept.append(p)
            best = p["accuracy"]
    return kept[::-1]


def verdicts(records: list[dict], family: Sequence[str] = TR_FAMILY, low: float = 1.5, high: float = 4.0) -> list[str]:
    """For each rival point (a method outside the TR variants) with a wall-clock speed-up in [low, high]:
    is some point of `family` at least as accurate at at least that speed-up (same batch size)?"""
    lines = []
    name = " + ".join(family)
    for batch in sorted({r["batch_size"] for r in records}):
        tr = [r for r in records if r["method"] in family and r["batch_size"] == batch]
        beaten = []
        for r in records:
            if (r["batch_size"] != batch or r["method"] in TR_VARIANTS + ("full",)
                    or not low <= r["wall_speedup"] <= high):
                continue
            faster = [t["accuracy"] for t in tr if t["wall_speedup"] >= r["wall_speedup"]]
            if not faster or max(faster) < r["accuracy"]:
                best = f"{100 * max(faster):.2f}%" if faster else "no TR point"
                beaten.append(f"{r['method']} ({r['setting']}): {100 * r['accuracy']:.2f}% at "
                              f"{r['wall_speedup']:.2f}x, TR at that speed or faster: {best}")
        if beaten:
            lines.append(f"- batch {batch}, {name}: rivals above its curve in {low:g}x-{high:g}x:")
            lines += [f"  - {b}" for b in beaten]
        else:
            lines.append(f"- batch {batch}, {name}: at or above every rival point in {low:g}x-{high:g}x")
    return lines


def int8_verdict(records: list[dict]) -> str:
    """The int8 target: TR + int8 >= 8x over the fp32 full model at batch 1 within 1 point, and faster than
    ONNX Runtime int8."""
    b1 = [r for r in records if r["batch_size"] == 1]
    ort = max((r["wall_speedup"] for r in b1 if r["method"] == "ort_int8"), default=None)
    ok = [r for r in b1 if r["method"] == "tr_int8" and r["accuracy"] >= r["full_accuracy"] - 0.01]
    if not ok:
        return "batch 1: no TR + int8 model within 1 point of the full model"
    best = max(ok, key=lambda r: r["wall_speedup"])
    ort_text = "n/a" if ort is None else f"{ort:.2f}x"
    return (f"batch 1: fastest TR + int8 within 1 point: {best['setting']}, {100 * best['accuracy']:.2f}% at "
            f"{best['wall_speedup']:.2f}x (target >= 8x: {'met' if best['wall_speedup'] >= 8 else 'not met'}); "
            f"ONNX Runtime int8 on the full model: {ort_text}")


def ort_tr_verdict(records: list[dict]) -> str:
    """The ONNX Runtime targets at batch 1: TR int8 in ONNX Runtime >= 12x over the PyTorch fp32 full model
    within 1 point, and >= 4x over ONNX Runtime int8 on the full model; TR fp32 in ONNX Runtime at least as
    fast as TR fp32 in PyTorch (the same alpha), at each batch size."""
    b1 = [r for r in records if r["batch_size"] == 1]
    if not any(r["method"] == "ort_tr_int8" for r in b1):
        return "no TR model ran in ONNX Runtime"
    ort = max((r["wall_speedup"] for r in b1 if r["method"] == "ort_int8"), default=None)
    ok = [r for r in b1 if r["method"] == "ort_tr_int8" and r["accuracy"] >= r["full_accuracy"] - 0.01]
    parts = []
    if ok:
        best = max(ok, key=lambda r: r["wall_speedup"])
        over_ort = "" if ort is None else (f", {best['wall_speedup'] / ort:.2f}x ONNX Runtime int8 on the full model "
                                            f"(target >= 4x: {'met' if best['wall_speedup'] >= 4 * ort else 'not met'})")
        parts.append(f"batch 1: fastest ONNX Runtime TR + int8 within 1 point: {best['setting']}, "
                     f"{100 * best['accuracy']:.2f}% at {best['wall_speedup']:.2f}x (target >= 12x: "
                     f"{'met' if best['wall_speedup'] >= 12 else 'not met'}){over_ort}")
    else:
        parts.append("batch 1: no ONNX Runtime TR + int8 model within 1 point of the full model")
    for batch in sorted({r["batch_size"] for r in records}):
        pairs = [(r, t) for r in records for t in records if r["batch_size"] == t["batch_size"] == batch
                 and r["method"] == "ort_tr" and t["method"] == "tr" and r["setting"] == t["setting"]]
        if pairs:
            faster = sum(r["wall_speedup"] >= t["wall_speedup"] for r, t in pairs)
            each = ", ".join(f"{r['wall_speedup']:.2f}x against {t['wall_speedup']:.2f}x" for r, t in pairs)
            parts.append(f"batch {batch}: ONNX Runtime TR fp32 at least as fast as PyTorch TR fp32 for {faster} of "
                         f"{len(pairs)} models ({each})")
    return "; ".join(parts + parity_verdicts(records))


def batch_verdict(records: list[dict]) -> str:
    """Does any method's output for a text depend on its batch (alone against in batches of 32)?"""
    checked = [r for r in records if r["batch_size"] == 1 and "batch_invariance" in r]
    if not checked:
        return "batch independence not checked"
    texts = checked[0]["batch_invariance"]["texts"]
    worst = max(checked, key=lambda r: r["batch_invariance"]["max_abs_logit_diff"])
    moved = [f"{r['method']} ({r['setting']}): {100 * (1 - r['batch_invariance']['predictions_equal']):.1f}% of "
             "predictions" for r in checked if r["batch_invariance"]["predictions_equal"] < 1]
    lengths = [r for r in checked if "kept_lengths_equal" in r["batch_invariance"]]
    moved += [f"{r['method']} ({r['setting']}): kept lengths of {100 * (1 - r['batch_invariance']['kept_lengths_equal']):.1f}% "
              "of the texts" for r in lengths if r["batch_invariance"]["kept_lengths_equal"] < 1]
    return (f"each of {texts} texts alone against in batches of 32, every method: logits within "
            f"{worst['batch_invariance']['max_abs_logit_diff']:.2g} ({worst['method']}, {worst['setting']}); "
            + ("the same prediction" + (" and kept lengths" if lengths else "") + " for every text" if not moved
               else "changed: " + ", ".join(moved)))


def parity_verdicts(records: list[dict]) -> list[str]:
    """The exported models against PyTorch on every test text: fp32 logits within 1e-4 and the same kept
    lengths; int8 decisions equal on >= 99% of the tokens and accuracy within 0.5 points of PyTorch int8."""
    said = []
    for r in records:
        check = r.get("parity")
        if r["batch_size"] != 1 or check is None:
            continue
        if r["method"] == "ort_tr":
            met = check["max_abs_logit_diff"] <= 1e-4 and check["kept_lengths_equal"] == 1.0
            said.append(f"{r['setting']} in ONNX Runtime fp32 against PyTorch: logits within "
                        f"{check['max_abs_logit_diff']:.2g}, kept lengths the same on {100 * check['kept_lengths_equal']:.2f}% "
                        f"of the texts, decisions on {100 * check['decisions_equal']:.3f}% of the tokens (target 1e-4 and "
                        f"every text: {'met' if met else 'not met'})")
        else:
            torch_int8 = next((t for t in records if t["method"] == check["against"] and t["setting"] == r["setting"]
                               and t["batch_size"] == 1), None)
            gap = None if torch_int8 is None else 100 * (r["accuracy"] - torch_int8["accuracy"])
            met = check["decisions_equal"] >= 0.99 and gap is not None and abs(gap) <= 0.5 + 1e-9
            against_fp32 = [f"{name} {100 * t['parity_fp32']['decisions_equal']:.2f}%" for name, t in
                            (("ONNX Runtime int8", r), ("PyTorch int8", torch_int8)) if t and "parity_fp32" in t]
            said.append(f"{r['setting']} in ONNX Runtime int8 against PyTorch int8: decisions equal on "
                        f"{100 * check['decisions_equal']:.2f}% of the tokens, accuracy "
                        + ("not compared" if gap is None else f"{gap:+.2f} points")
                        + f" (targets >= 99% and within 0.5 points: {'met' if met else 'not met'})"
                        + (f"; decisions equal to the fp32 model's: {', '.join(against_fp32)}" if against_fp32 else ""))
    return said


def table(records: list[dict]) -> str:
    ordered = sorted(records, key=lambda r: (r["batch_size"], r["method"] != "full", -r["wall_speedup"]))
    return markdown_table(ordered, [
        ("method", ":--", lambda r: r["method"]), ("setting", ":--", lambda r: r["setting"]),
        ("batch", "--:", lambda r: str(r["batch_size"])), ("accuracy", "--:", lambda r: f"{100 * r['accuracy']:.2f}"),
        ("diff vs full (95% CI)", ":--", diff_cell("accuracy_diff")), ("kept per step", ":--", kept_cell),
        ("GFLOPs", "--:", lambda r: f"{r['gflops_per_example']:.2f}"),
        ("FLOPs speed-up", "--:", speedup_cell("flops_speedup")), ("wall speed-up", "--:", speedup_cell("wall_speedup")),
        ("latency ms (b1) / texts/s (b32)", "--:",
         lambda r: str(r["latency_ms"] if r["batch_size"] == 1 else r["throughput_per_s"])),
        ("peak MiB", "--:", lambda r: "" if r.get("peak_mem_mb") is None else f"{r['peak_mem_mb']:g}"),
    ])


COLOURS = {"tr": "#d62728", "tr_int8": "#ff7f0e", "truncation": "#1f77b4", "layers": "#9467bd",
           "attention_topk": "#8c564b", "ltp": "#e377c2", "int8": "#2ca02c", "ort_fp32": "#17becf",
           "ort_int8": "#7f7f7f", "ort_tr": "#bcbd22", "ort_tr_int8": "#000000"}


def plot(records: list[dict], path: Path, title: str) -> None:
    """Accuracy against wall-clock speed-up, batch 1 and batch 32 side by side: every point of a method, its
    front (the points no faster point of the method beats) as a line, and each point's ideal (FLOPs)
    speed-up as a small cross of the same colour."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 5.2))
    FigureCanvasAgg(fig)
    batches = sorted({r["batch_size"] for r in records})
    methods = list(dict.fromkeys(r["method"] for r in records if r["method"] != "full"))
    colours = {m: COLOURS.get(m, f"C{i % 10}") for i, m in enumerate(methods)}
    for k, batch in enumerate(batches):
        ax = fig.add_subplot(1, len(batches), k + 1)
        full = next(r for r in records if r["method"] == "full" and r["batch_size"] == batch)
        for m in methods:
            points = sorted((r for r in records if r["method"] == m and r["batch_size"] == batch),
                            key=lambda r: r["wall_speedup"])
            ys = [100 * p["accuracy"] for p in points]
            front = envelope(points, (m,), batch)
            style = "-" if m in TR_VARIANTS else "--"
            ax.plot([p["wall_speedup"] for p in front], [100 * p["accuracy"] for p in front], style, marker="o",
                    color=colours[m], label=m, linewidth=2.5 if style == "-" else 1)
            ax.plot([p["wall_speedup"] for p in points], ys, "o", color=colours[m], markersize=4)
            ax.plot([p["flops_speedup"] for p in points], ys, "x", color=colours[m], alpha=0.6)
        ax.axhline(100 * full["accuracy"], color="gray", linestyle=":", linewidth=1)
        ax.plot([1.0], [100 * full["accuracy"]], "*", color="black", markersize=12, label="full model")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("speed-up over the full model (wall clock; x: ideal from FLOPs)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"batch {batch}")
        low = min(100 * r["accuracy"] for r in records)
        ax.set_ylim(max(low - 1, 100 * full["accuracy"] - 15), 100 * full["accuracy"] + 1.5)
        ax.grid(alpha=0.3, which="both")
        if k == 0:
            ax.legend(fontsize=8, loc="lower left")
    fig.suptitle(title)
    fig.tight_layout()
    save_png(fig, path, dpi=110)


# ---------------------------------------------------------------------------- the command
def run(preset_name: str = "quick", run_dir: str | None = None, backbone: str | None = None, seed: int = 0,
        threads: int = 2, report: bool = False, progress: bool = True, command: str | None = None,
        data: str = "bbc") -> list[dict]:
    choices = presets(data)
    if preset_name not in choices:
        raise ValueError(f"preset {preset_name!r}: the bench on {data} has the presets {', '.join(choices)}")
    preset = choices[preset_name]
    corpus = main_job.CORPORA[data]
    name = benchmark_name(preset)
    backbone = backbone or default_backbone()
    run_path = Path(run_dir or f"runs/{corpus.slug}-{preset.main_job}")
    torch.manual_seed(seed)
    folders = prepare(preset, run_path, backbone, seed, progress)
    methods = build_methods(folders, threads)
    test = corpus.load(seed=0)["test"]
    if preset.test_examples is not None:
        test = test.select(evaluation.spread(len(test), preset.test_examples))
    tokenizer = AutoTokenizer.from_pretrained(folders["full"])
    records = measure(methods, tokenizer, list(test["text"]), list(test["label"]), preset, progress)
    common = {"model": main_job.MODEL_NAME, "data": corpus.data, "split": "test"}
    records = [evaluation.results_record(r, **common) for r in records]

    command = command or shlex.join(["trbert", "bench", "--preset", preset.name] + (["--data", data] if data != "bbc" else []))
    rp = folders["main_job"]
    title = f"{corpus.title} test, {main_job.MODEL_NAME}, max length {rp.max_length} ({preset.name} preset)"
    outputs = [(run_path / f"{name}.json", run_path / f"{name}.png")]
    if report:
        outputs.append((Path("docs/results") / f"{name}_{preset.name}.json",
                        Path("docs/results") / f"{name}_{preset.name}.png"))
    for json_path, png_path in outputs:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        evaluation.write_results_json(json_path, f"{name}_{preset.name}", command, records)
        plot(records, png_path, title)
    text = "\n".join([table(records), "", *verdicts(records), *verdicts(records, TR_VARIANTS),
                      "- " + int8_verdict(records), "- " + ort_tr_verdict(records), "- " + batch_verdict(records)])
    (run_path / f"{name}.md").write_text(text + "\n")
    print(text)
    if report:
        section = markdown_section(preset, records, command, title, outputs[-1][1], Path("docs/RESULTS.md"))
        update_section("docs/RESULTS.md", section_key(preset), section)
    return records


def markdown_section(preset: BenchPreset, records: list[dict], command: str, title: str, png: Path,
                     md: Path) -> str:
    machine = evaluation.machine()
    n = records[0]["n_examples"]
    corpus, key = main_job.CORPORA[preset.data], section_key(preset)
    unit = corpus.unit
    return "\n".join([
        f"<!-- {key}:begin -->",
        f"## Every rival on {corpus.title}: the accuracy / speed front ({preset.name} preset)",
        "",
        f"{title}. Accuracy on {'all ' if preset.test_examples is None else ''}{n} test {unit}"
        f"{'' if preset.test_examples is None else ' spread evenly over the split'} against the full model (95% "
        "paired-bootstrap interval); "
        f"GFLOPs per {unit[:-1]} (2 x multiply-adds executed); wall-clock speed-up over the fp32 full model measured in "
        f"the same run, all methods interleaved over {preset.rounds} rounds (median; each timed pass after one untimed "
        "batch of its own), at batch 1 on "
        f"{preset.timed_b1} and batch 32 on {preset.timed_b32} test {unit} spread evenly over the split; peak memory: resident "
        "memory a first batch of 32 adds on top of the loaded model (measured before the other passes).",
        "",
        *([f"- Data: {corpus.note}."] if corpus.note else []),
        *provenance(command, machine),
        "",
        table(records),
        "",
        "TR-BERT against the rivals (wall clock, same batch size; fp32 TR alone, then with its int8 variant):",
        "",
        *verdicts(records),
        *verdicts(records, TR_VARIANTS),
        "- " + int8_verdict(records),
        "- " + ort_tr_verdict(records),
        "- " + batch_verdict(records),
        "",
        f"![accuracy against wall-clock speed-up]({Path(os.path.relpath(png, md.parent)).as_posix()})",
        f"<!-- {key}:end -->",
    ])
