"""ONNX export, run by ONNX Runtime: plain transformers classifiers, and TR models with their policies,
keep rule, budget and the removal of skipped tokens inside the graph (fp32 or int8).

    export_onnx(plain_classifier, "model.onnx")
    quantize_onnx_int8("model.onnx", "model.int8.onnx")
    logits = OnnxClassifier("model.int8.onnx", threads=2)(trbert.encode(tokenizer, texts))

    export_folder(tr_model, tokenizer, "exported/")          # model.onnx, config.json, tokenizer
    out = OnnxTRModel.from_pretrained("exported/")(**trbert.encode(tokenizer, texts))
    out.logits, out.kept_lengths

A TR model is exported in its graph mode (`TRBertModel.forward(graph=True)`): after each reduction
step every example's kept tokens move to the front and the batch shrinks to the most any example keeps,
so at batch 1 exactly the kept tokens go on, and in a batch the rest are masked; an example's outputs
never depend on its batch.
"""

import copy
import json
import logging
import os
import warnings
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError
from ..io import atomic_folder, atomic_path, write_json
from ..modeling import TRBertPreTrainedModel

ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_EXPORT_ATOL = 1e-4  # |logit difference| accepted between the exported graph and PyTorch (plus 1e-3 relative)
OPSET = 17  # ScatterElements with a sum (per-example counts) needs 16 or later
ONNX_FILE, RECORD_FILE = "model.onnx", "trbert-onnx.json"
# The outputs of each TR head's graph, in order.
TR_OUTPUTS = {"TRBertForSequenceClassification": ("logits", "kept_lengths", "kept_steps"),
              "TRBertForTokenClassification": ("logits", "kept_lengths", "kept_steps"),
              "TRBertForQuestionAnswering": ("start_logits", "end_logits", "kept_lengths", "kept_steps"),
              "TRBertModel": ("last_hidden_state", "kept_lengths", "kept_steps")}


def _dummy_inputs(config, device, lengths=None) -> dict[str, torch.Tensor]:
    """Examples of different lengths (random words, the separator last, right-padded), so the traced graph
    keeps the padding mask and the general per-example path."""
    lengths = lengths or [8, 4]
    n = max(lengths)
    gen = torch.Generator().manual_seed(len(lengths))
    ids = torch.randint(5, min(config.vocab_size, 1000), (len(lengths), n), generator=gen)
    mask = torch.zeros(len(lengths), n, dtype=torch.long)
    sep = getattr(config, "sep_token_id", None)
    for b, length in enumerate(lengths):
        mask[b, :length] = 1
        ids[b, length:] = config.pad_token_id or 0
        if sep is not None and sep < config.vocab_size:
            ids[b, length - 1] = sep
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    return {k: v.to(device) for k, v in inputs.items()}


class _Graph(nn.Module):
    """A TR model's forward in graph mode, its outputs as a tuple (what the exporter traces)."""

    def __init__(self, model: TRBertPreTrainedModel, outputs: tuple[str, ...]):
        super().__init__()
        self.model, self.outputs = model, outputs

    def forward(self, input_ids, attention_mask, token_type_ids):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, graph=True)
        return tuple(getattr(out, name) for name in self.outputs)


def check_exportable(model: TRBertPreTrainedModel) -> None:
    """A clear error for what a graph cannot hold."""
    config = model.config
    name = type(model).__name__
    if name not in TR_OUTPUTS:
        raise ValueError(f"{name}: export_onnx exports {', '.join(TR_OUTPUTS)} and plain transformers classifiers")
    if config.long_input:
        raise ValueError("a long-input model (long_input=True) is not exported: its segments below the first "
                         "reduction step depend on the input's length; export it with long_input=False (inputs "
                         "up to the model's limit)")
    if config.selection in ("attention_topk", "attention_threshold", "early_exit"):
        raise ValueError(f"selection={config.selection!r} is not exported: it sizes a grid of tokens by the "
                         "batch's longest example on the host, which a graph would freeze; the learned policy exports")
    if config.skipped_as_keys:
        raise ValueError("skipped_as_keys=True is not exported (skipped tokens kept as keys need per-example "
                         "packing); export a model without it")


def export_onnx(model: nn.Module, path: str | os.PathLike, opset: int | None = None) -> Path:
    """Export a plain transformers sequence classifier (e.g. `BertForSequenceClassification`) or a TR model
    (`TRBertFor...`, `TRBertModel`) to ONNX.

    Inputs `input_ids`, `attention_mask`, `token_type_ids` (int64 [batch, sequence], both axes dynamic).
    Outputs: `logits` (float32 [batch, num_labels]) for a plain classifier; a TR model's head outputs and
    `kept_lengths` (int64 [batch, steps]) and `kept_steps` (int64 [batch, sequence]: the steps each token
    passed; `TR_OUTPUTS`). The exported graph is checked against PyTorch on
    inputs other than those it was traced on before the file is written (atomically: an interrupted
    export leaves no partial file). Returns the path.
    """
    device = next(model.parameters()).device
    tr = isinstance(model, TRBertPreTrainedModel)
    if tr:
        check_exportable(model)
        outputs = TR_OUTPUTS[type(model).__name__]
        model = copy.deepcopy(model)  # the caller's model is not changed
        model.base_model.encoder.fuse_query_key_value()  # one product per layer instead of three
        traced = _Graph(model, outputs).eval()
        inputs = _dummy_inputs(model.config, device, [7, 4, 3])
        check = _dummy_inputs(model.config, device, [3, 8, 5, 8])
    else:
        outputs, traced = ("logits",), model
        inputs = check = _dummy_inputs(model.config, device)
    per_token = {"start_logits", "end_logits", "last_hidden_state", "kept_steps"}
    if type(model).__name__ == "TRBertForTokenClassification":
        per_token.add("logits")
    axes = {name: {0: "batch", 1: "sequence"} for name in ONNX_INPUTS}
    axes |= {name: {0: "batch", 1: "sequence"} if name in per_token else {0: "batch"} for name in outputs}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = _as_tuple(traced(**check) if tr else (model(**check).logits,))
        with atomic_path(path) as tmp:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
                # The TorchScript exporter (dynamo=False): fast, needs no onnxscript, and exports SDPA
                # attention as is; the padding mask stays a graph input (transformers never drops it when tracing).
                torch.onnx.export(
                    traced, (), tmp, kwargs=inputs, input_names=list(ONNX_INPUTS), output_names=list(outputs),
                    dynamic_axes=axes, opset_version=opset or OPSET, dynamo=False,
                )
            _check_parity(tmp, check, expected, outputs)
    finally:
        model.train(was_training)
    return Path(path)


def _as_tuple(values) -> tuple[np.ndarray, ...]:
    return tuple(v.detach().float().cpu().numpy() if v.is_floating_point() else v.detach().cpu().numpy() for v in values)


def _check_parity(path, inputs, expected, outputs) -> None:
    session = _cpu_session(path, None, RuntimeError)  # optimised as the runtime classes run it
    names = {i.name for i in session.get_inputs()}  # (a model without token types has no token_type_ids)
    got = session.run(None, {k: v.cpu().numpy() for k, v in inputs.items() if k in names})
    for name, want, have in zip(outputs, expected, got):
        if name in ("kept_lengths", "kept_steps"):
            if not np.array_equal(want, have):
                raise RuntimeError(f"the exported graph keeps other tokens than PyTorch ({name} {have.tolist()} "
                                   f"against {want.tolist()}); the ONNX file was not written")
        elif want.shape != have.shape or not np.allclose(have, want, rtol=1e-3, atol=_EXPORT_ATOL):
            diff = float(np.abs(have - want).max()) if want.shape == have.shape else float("inf")
            raise RuntimeError(f"the exported graph's {name} differ from PyTorch's by up to {diff:.2e}; the ONNX "
                               "file was not written")


# How `quantize_onnx_int8` quantizes, recorded in each int8 file; as `quantize_int8` does: the linear layers'
# products only (the embedding tables stay fp32), weights on 7 bits per output channel (reduce_range:
# codes in [-64, 64]) so that 16-bit pair sums on CPUs without VNNI do not saturate, activations on 8 bits
# at run time with one scale per token (`_quantize_per_token`).
INT8_RECIPE = {"op_types": ["MatMul"], "weight_bits": 7, "per_channel": True, "activations": "uint8 per token"}
_RECIPE_KEY = "trbert_int8"
_TOKEN_SCALE = np.float32(2 / 255)  # the quantization scale of a token divided by its largest magnitude


def quantize_onnx_int8(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write an int8 copy of the ONNX model `src` at `dst` (onnxruntime dynamic quantization, `INT8_RECIPE`:
    int8 weights with one scale per output channel, activations quantized at run time, each token on its own
    scale, so that an example's outputs do not depend on its batch). A TR model's policy
    networks and exit classifiers stay fp32, as in `quantize_int8`: they decide which tokens go on.
    Returns `dst`."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if not os.path.isfile(src):
        raise FileNotFoundError(f"no ONNX model at {os.fspath(src)!r}: write one with trbert.deployment.export_onnx")
    graph = onnx.load(os.fspath(src), load_external_data=False).graph
    deciders = [node.name for node in graph.node if "/policy." in node.name or "/exits." in node.name]
    deciders += [f"{name}_MatMul" for name in deciders]  # the quantizer first splits a Gemm into MatMul + Add
    with atomic_path(dst) as tmp, _no_preprocess_hint():
        quantize_dynamic(os.fspath(src), tmp, weight_type=QuantType.QInt8, op_types_to_quantize=INT8_RECIPE["op_types"],
                         per_channel=INT8_RECIPE["per_channel"], reduce_range=INT8_RECIPE["weight_bits"] == 7,
                         nodes_to_exclude=deciders)
        quantized = _quantize_per_token(onnx.load(tmp))
        onnx.helper.set_model_props(quantized, {_RECIPE_KEY: json.dumps(INT8_RECIPE, sort_keys=True)})
        onnx.save(quantized, tmp)
    return Path(dst)


def _quantize_per_token(model):
    """Make the quantized graph round each token on its own scale, as `quantize_int8` does.

    onnxruntime's dynamic quantization rounds a whole tensor on one scale (DynamicQuantizeLinear), so a
    token's rounding depends on the other tokens of its batch. Each DynamicQuantizeLinear becomes: divide
    each token by its largest magnitude and quantize on the fixed scale 2/255 around 128 (the range
    [-1, 1]); its scale, now a constant, is folded into the weight scales; each product, once in fp32, is
    multiplied back by its token's magnitude before the bias is added. Standard ONNX operators only."""
    from onnx import helper, numpy_helper

    graph = model.graph
    constants = {t.name: t for t in graph.initializer}
    scale, zero, tiny = "trbert_token_scale", "trbert_token_zero_point", "trbert_token_tiny"
    graph.initializer.extend([numpy_helper.from_array(np.array(_TOKEN_SCALE), scale),
                              numpy_helper.from_array(np.array(128, np.uint8), zero),
                              numpy_helper.from_array(np.array(1e-30, np.float32), tiny)])  # an all-zero token
    magnitude_of, zero_points = {}, set()  # a DynamicQuantizeLinear's scale output -> its tokens' magnitudes
    scale_back = {}  # a product of scales -> the magnitudes that the products it scales are multiplied by
    folded, scaled_back, nodes = set(), set(), []
    for node in graph.node:
        if node.op_type == "DynamicQuantizeLinear":
            x, (quantized, x_scale, x_zero) = node.input[0], node.output
            magnitude = f"{x}_token_magnitude"
            # Largest magnitude from the largest and the smallest value: two reads, no |x| written out.
            nodes += [helper.make_node("ReduceMax", [x], [f"{x}_max"], name=f"{x}_ReduceMax", axes=[-1], keepdims=1),
                      helper.make_node("ReduceMin", [x], [f"{x}_min"], name=f"{x}_ReduceMin", axes=[-1], keepdims=1),
                      helper.make_node("Neg", [f"{x}_min"], [f"{x}_neg_min"], name=f"{x}_Neg"),
                      helper.make_node("Max", [f"{x}_max", f"{x}_neg_min", tiny], [magnitude], name=f"{x}_Max"),
                      helper.make_node("Div", [x, magnitude], [f"{x}_per_token"], name=f"{x}_Div"),
                      helper.make_node("QuantizeLinear", [f"{x}_per_token", scale, zero], [quantized],
                                       name=f"{x}_QuantizeLinear")]
            magnitude_of[x_scale] = magnitude
            zero_points.add(x_zero)
            continue
        if node.op_type == "Mul" and node.input[0] in magnitude_of:  # the input's scale x the weight scales
            product = numpy_helper.to_array(constants[node.input[1]]) * _TOKEN_SCALE
            graph.initializer.append(numpy_helper.from_array(product.astype(np.float32), node.output[0]))
            scale_back[node.output[0]] = magnitude_of[node.input[0]]
            folded.add(node.input[1])
            continue
        node.input[:] = [zero if name in zero_points else name for name in node.input]
        nodes.append(node)
        if node.op_type == "Mul" and node.input[1] in scale_back:  # an int32 product in fp32 x its scales
            out = node.output[0]
            node.output[0] = f"{out}_per_token"
            nodes.append(helper.make_node("Mul", [f"{out}_per_token", scale_back[node.input[1]]], [out],
                                          name=f"{out}_scale_back"))
            scaled_back.add(node.input[1])
    if not magnitude_of:
        raise ValueError("the ONNX model has no linear layer (MatMul by a weight matrix) to quantize")
    if set(scale_back.values()) != set(magnitude_of.values()) or scaled_back != set(scale_back):
        raise RuntimeError("onnxruntime's quantizer wrote a graph of another form than expected (DynamicQuantizeLinear,"
                           " MatMulInteger, Cast, Mul by the scales); the int8 file was not written")
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    kept = [t for t in graph.initializer if t.name not in folded or t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return model


def int8_recipe(path: str | os.PathLike) -> dict | None:
    """How the int8 ONNX file at `path` was quantized (`INT8_RECIPE` as it was then), or None for a file
    without the record (fp32, or quantized otherwise)."""
    import onnx

    props = {p.key: p.value for p in onnx.load(os.fspath(path), load_external_data=False).metadata_props}
    return json.loads(props[_RECIPE_KEY]) if _RECIPE_KEY in props else None


def export_folder(model: TRBertPreTrainedModel, tokenizer, out: str | os.PathLike, int8: bool = False) -> Path:
    """A folder that `OnnxTRModel.from_pretrained` (and `trbert predict` / `trbert eval --model`) runs:
    model.onnx (int8 with `int8`), the model's config.json and its tokenizer, and trbert-onnx.json (what
    was exported). Written whole: an interrupted export leaves no folder."""
    from .. import __version__

    if not isinstance(model, TRBertPreTrainedModel):
        raise TypeError(f"export_folder exports trbert models, got {type(model).__name__} (export_onnx exports "
                        "plain classifiers)")
    check_exportable(model)
    with atomic_folder(out) as folder:
        fp32 = folder / (ONNX_FILE if not int8 else "model-fp32.onnx")
        export_onnx(model, fp32)
        if int8:
            quantize_onnx_int8(fp32, folder / ONNX_FILE)
            fp32.unlink()
        model.config.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        write_json(folder / RECORD_FILE, {"trbert": __version__, "architecture": type(model).__name__,
                                          "outputs": list(TR_OUTPUTS[type(model).__name__]),
                                          "precision": "int8" if int8 else "float32", "opset": OPSET,
                                          **({"int8": INT8_RECIPE} if int8 else {})})
    return Path(out)


@contextmanager
def _no_preprocess_hint():
    """Silence onnxruntime's hint to pre-process the model first (it makes no difference for these
    graphs) and its notes on the integer tensors it does not quantize, without its `logging.warning`
    configuring the root logger."""

    def hint(record: logging.LogRecord) -> bool:
        # also its notes on tensors it leaves alone (a TR graph's token indices are integers)
        return not record.getMessage().startswith(("Please consider", "Inference failed or unsupported type"))

    root = logging.getLogger()
    null = logging.NullHandler()
    root.addFilter(hint)
    root.addHandler(null)
    try:
        yield
    finally:
        root.removeHandler(null)
        root.removeFilter(hint)


def _cpu_session(path, threads: int | None, error: type[Exception]):
    """An ONNX Runtime session on the CPU with every graph optimisation, or `error` saying the file is unreadable."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for unreadable models
        raise error(f"{os.fspath(path)!r} is not a readable ONNX model ({type(e).__name__}: {e}); it may be "
                    "corrupt or half-written: export it again") from None


class OnnxClassifier:
    """An exported sequence classifier run by onnxruntime on the CPU: a batch in, logits out."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(
                f"no ONNX model at {self.path!r}: export one with trbert.deployment.export_onnx "
                "(and quantize_onnx_int8 for int8)"
            )
        self.session = _cpu_session(self.path, threads, ValueError)
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """`batch`: input_ids and attention_mask [B, n] (token_type_ids: zeros when absent). Returns
        the logits, float32 [B, C]."""
        if "input_ids" not in batch:
            raise ValueError("the batch has no input_ids: tokenize with return_tensors='pt' (or use trbert.encode)")
        ids = torch.as_tensor(batch["input_ids"])
        feed = {}
        for name in self.input_names:
            value = batch.get(name)
            if value is None:
                value = torch.ones_like(ids) if name == "attention_mask" else torch.zeros_like(ids)
            feed[name] = torch.as_tensor(value).detach().cpu().to(torch.int64).numpy()
        return torch.from_numpy(self.session.run(None, feed)[0]).float()


class OnnxTRModel:
    """An exported TR model (`export_folder`, `trbert export`) run by ONNX Runtime on the CPU. Called like the
    PyTorch model, it returns the same output type with the same fields (`logits` or `start_logits` /
    `end_logits`, and `kept_lengths`, `kept_fraction`, `kept_steps`), as torch tensors."""

    def __init__(self, folder: str | os.PathLike, threads: int | None = None):
        from transformers import AutoConfig

        self.folder = Path(folder)
        path = self.folder / ONNX_FILE
        if not path.is_file():
            raise CheckpointError(f"{self.folder}: no {ONNX_FILE} here; export a model with `trbert export --model "
                                  f"DIR --out {self.folder}`")
        try:
            self.record = json.loads((self.folder / RECORD_FILE).read_text())
            self.config = AutoConfig.from_pretrained(self.folder)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{self.folder}: not a folder written by trbert export ({type(e).__name__}: {e}); "
                                  "export it again") from None
        self.session = _cpu_session(path, threads, CheckpointError)
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.input_names = [i.name for i in self.session.get_inputs()]

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, threads: int | None = None) -> "OnnxTRModel":
        return cls(folder, threads)

    def eval(self):  # what evaluation code calls on a model; a session is always in inference mode
        return self

    def to(self, *args, **kwargs):  # a session runs where it was made (the CPU)
        return self

    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, **kwargs):
        from .. import modeling
        from ..configuration import token_limit

        limit = token_limit(self.config)
        if isinstance(input_ids, torch.Tensor) and input_ids.dim() == 2 and input_ids.shape[1] > limit:
            raise ValueError(f"the input has {input_ids.shape[1]} tokens but the model takes at most {limit}: "
                             f"tokenize with truncation=True, max_length={limit}")
        modeling.check_shapes(self.config, input_ids, attention_mask, None)
        # The content checks and the feed in numpy: torch's small operations here cost about 0.1 ms more
        # per call, measurable against a short text's 4 ms run.
        ids = input_ids.detach().cpu().numpy().astype(np.int64, copy=False)
        mask = (np.ones_like(ids) if attention_mask is None
                else attention_mask.detach().cpu().numpy().astype(np.int64, copy=False))
        present = mask != 0
        text = present & (ids != self.config.sep_token_id)
        text[:, 0] = False  # [CLS] (<s>)
        modeling.check_present((~present.any(1)).tolist(), (~text.any(1)).tolist())
        given = {"input_ids": ids, "attention_mask": mask,
                 "token_type_ids": np.zeros_like(ids) if token_type_ids is None
                 else token_type_ids.detach().cpu().numpy().astype(np.int64, copy=False)}
        values = dict(zip(self.outputs, self.session.run(None, {name: given[name] for name in self.input_names})))
        kept = values.pop("kept_lengths")
        fraction = (kept / present.sum(1, keepdims=True)).astype(np.float32)
        output_type = {"TRBertForSequenceClassification": modeling.TRBertSequenceClassifierOutput,
                       "TRBertForTokenClassification": modeling.TRBertTokenClassifierOutput,
                       "TRBertForQuestionAnswering": modeling.TRBertQuestionAnsweringOutput,
                       "TRBertModel": modeling.TRBertModelOutput}[self.record["architecture"]]
        return output_type(**{name: torch.from_numpy(v) for name, v in values.items()},
                           kept_lengths=torch.from_numpy(kept), kept_fraction=torch.from_numpy(fraction))
