"""Deployment: int8 in PyTorch (`quantize_int8`), and the full model in ONNX Runtime (fp32 and int8)."""

from .int8 import quantize_int8
from .onnx import OnnxClassifier, export_onnx, quantize_onnx_int8

__all__ = ["OnnxClassifier", "export_onnx", "quantize_int8", "quantize_onnx_int8"]
