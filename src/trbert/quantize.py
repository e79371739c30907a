"""CPU deployment: int8 weights in PyTorch, and ONNX export (fp32 or int8) run by onnxruntime.

    q = quantize_int8(model)                      # a trbert or plain transformers model, PyTorch int8
    export_onnx(plain_classifier, "model.onnx")   # a plain transformers sequence classifier
    quantize_onnx_int8("model.onnx", "model.int8.onnx")
    logits = OnnxClassifier("model.int8.onnx", threads=2)(trbert.encode(tokenizer, texts))

`quantize_int8` leaves the token-reduction policy networks in fp32: they are tiny, and their keep
decisions are thresholds on a probability, so int8 noise there changes which tokens go on.
"""

import copy
import logging
import os
import tempfile
import warnings
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear
from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

from .reduction import TRBertEncoder

ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_EXPORT_ATOL = 1e-4  # |logit difference| accepted between the exported graph and PyTorch (plus 1e-3 relative)


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of `model` (in eval mode) whose `nn.Linear` layers have int8 weights and dynamically
    quantized int8 activations; the policy networks (`encoder.policy`, `encoder.exits`) stay fp32.

    Works for trbert models and plain transformers models; the model must be on the CPU. The input
    model is not changed.
    """
    devices = {t.device.type for t in [*model.parameters(), *model.buffers()]}
    if devices - {"cpu"}:
        raise ValueError(
            f"quantize_int8 needs a model on the CPU (dynamic int8 quantization runs on CPU only), but it is on "
            f"{sorted(devices - {'cpu'})}: call model.cpu() first"
        )
    model = copy.deepcopy(model)
    encoder = getattr(getattr(model, "base_model", model), "encoder", None)
    if isinstance(encoder, TRBertEncoder):
        _fuse_query_key_value(encoder)
    fp32 = {id(m) for name in ("policy", "exits") for m in getattr(encoder, name, nn.Module()).modules()}
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated but still the working int8 path for CPU inference.
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor")
        # One weight scale per output row: as fast as one per matrix; on MiniLM it halves 1 - cosine of the outputs.
        spec = {
            name: per_channel_dynamic_qconfig
            for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and id(m) not in fp32
        }
        quantized = quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)
    for module in quantized.modules():
        if type(module) is DynamicInt8Linear:
            module.__class__ = _Int8Linear
    return quantized.eval()


_LINEAR_INT8 = torch.ops.quantized.linear_dynamic.default


class _Int8Linear(DynamicInt8Linear):
    """torch's dynamic int8 linear layer (the same weights, state and kernel call) without the checks its
    forward makes on every call: with a few tokens per call they are a quarter of its time (measured: 39
    against 54 microseconds for 10 tokens, 384 -> 384)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _LINEAR_INT8(x, self._packed_params._packed_params, True)  # True: reduce_range, as torch's


def _fuse_query_key_value(encoder: TRBertEncoder) -> None:
    """Give each layer's self-attention one `qkv` projection (the query, key and value weights stacked):
    at batch 1 with few kept tokens an int8 linear call costs about as much as its arithmetic, so one
    call instead of three shortens each layer. Per-row weight scales and the shared per-tensor input scale
    make its outputs those of the three projections. The packed layers use it where queries, keys and
    values come from the same tokens."""
    for layer in encoder.layer:
        sa = layer.attention.self
        parts = (sa.query, sa.key, sa.value)
        fused = nn.Linear(parts[0].in_features, sum(p.out_features for p in parts))
        with torch.no_grad():
            fused.weight.copy_(torch.cat([p.weight for p in parts]))
            fused.bias.copy_(torch.cat([p.bias for p in parts]))
        sa.qkv = fused


@contextmanager
def _atomic_path(path: str | os.PathLike):
    """A temporary path in the folder of `path`, moved onto `path` when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _dummy_inputs(config, device) -> dict[str, torch.Tensor]:
    """Two examples of different lengths, so the traced graph keeps the padding mask."""
    n = min(8, config.max_position_embeddings)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1, min(config.vocab_size, 1000), (2, n), generator=gen)
    mask = torch.ones(2, n, dtype=torch.long)
    mask[1, n // 2 :] = 0
    ids[1, n // 2 :] = config.pad_token_id or 0
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    return {k: v.to(device) for k, v in inputs.items()}


def export_onnx(model: nn.Module, path: str | os.PathLike, opset: int | None = None) -> Path:
    """Export a plain transformers sequence classifier (e.g. `BertForSequenceClassification`) to ONNX.

    Inputs `input_ids`, `attention_mask`, `token_type_ids` (int64 [batch, sequence], both axes dynamic);
    output `logits` (float32 [batch, num_labels]). The exported graph is checked against PyTorch before
    the file is written (atomically: an interrupted export leaves no partial file). Returns the path.
    """
    from .modeling import TRBertPreTrainedModel

    if isinstance(model, TRBertPreTrainedModel):
        raise TypeError(
            "export_onnx exports plain transformers classifiers; a trbert model's token reduction "
            "(data-dependent kept tokens per example) is not exported: use quantize_int8 for it instead"
        )
    device = next(model.parameters()).device
    inputs = _dummy_inputs(model.config, device)
    axes = {name: {0: "batch", 1: "sequence"} for name in ONNX_INPUTS} | {"logits": {0: "batch"}}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = model(**inputs).logits.float().cpu().numpy()
        with _atomic_path(path) as tmp:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
                # The TorchScript exporter (dynamo=False): fast, needs no onnxscript, and exports SDPA
                # attention as is; the padding mask stays a graph input (transformers never drops it when tracing).
                torch.onnx.export(
                    model, (), tmp, kwargs=inputs, input_names=list(ONNX_INPUTS), output_names=["logits"],
                    dynamic_axes=axes, opset_version=opset, dynamo=False,
                )
            got = OnnxClassifier(tmp, threads=1)({k: v.cpu() for k, v in inputs.items()}).numpy()
            if not np.allclose(got, expected, rtol=1e-3, atol=_EXPORT_ATOL):
                diff = float(np.abs(got - expected).max())
                raise RuntimeError(
                    f"the exported graph's logits differ from PyTorch's by up to {diff:.2e}; the ONNX file was "
                    "not written"
                )
    finally:
        model.train(was_training)
    return Path(path)


def quantize_onnx_int8(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write an int8 copy of the ONNX model `src` at `dst` (onnxruntime dynamic quantization: int8
    weights with one scale per output channel, activations quantized at run time). Returns `dst`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if not os.path.isfile(src):
        raise FileNotFoundError(f"no ONNX model at {os.fspath(src)!r}: write one with trbert.quantize.export_onnx")
    with _atomic_path(dst) as tmp, _no_preprocess_hint():
        quantize_dynamic(os.fspath(src), tmp, weight_type=QuantType.QInt8, per_channel=True)
    return Path(dst)


@contextmanager
def _no_preprocess_hint():
    """Silence onnxruntime's hint to pre-process the model first (it makes no difference for these
    graphs), without its `logging.warning` configuring the root logger."""

    def hint(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider")

    root = logging.getLogger()
    null = logging.NullHandler()
    root.addFilter(hint)
    root.addHandler(null)
    try:
        yield
    finally:
        root.removeHandler(null)
        root.removeFilter(hint)


class OnnxClassifier:
    """An exported sequence classifier run by onnxruntime on the CPU: a batch in, logits out."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        import onnxruntime as ort

        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(
                f"no ONNX model at {self.path!r}: export one with trbert.quantize.export_onnx "
                "(and quantize_onnx_int8 for int8)"
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for unreadable models
            raise ValueError(
                f"{self.path!r} is not a readable ONNX model ({type(e).__name__}: {e}); it may be corrupt "
                "or half-written: export it again"
            ) from e
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
