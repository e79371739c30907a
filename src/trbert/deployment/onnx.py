"""ONNX export of a plain transformers sequence classifier (fp32 or int8), run by ONNX Runtime.

    export_onnx(plain_classifier, "model.onnx")
    quantize_onnx_int8("model.onnx", "model.int8.onnx")
    logits = OnnxClassifier("model.int8.onnx", threads=2)(trbert.encode(tokenizer, texts))
"""

import logging
import os
import warnings
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..io import atomic_path
from ..modeling import TRBertPreTrainedModel

ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_EXPORT_ATOL = 1e-4  # |logit difference| accepted between the exported graph and PyTorch (plus 1e-3 relative)


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
        with atomic_path(path) as tmp:
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
        raise FileNotFoundError(f"no ONNX model at {os.fspath(src)!r}: write one with trbert.deployment.export_onnx")
    with atomic_path(dst) as tmp, _no_preprocess_hint():
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
                f"no ONNX model at {self.path!r}: export one with trbert.deployment.export_onnx "
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
