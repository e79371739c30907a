"""Deployment: int8 in PyTorch (`quantize_int8`), and ONNX Runtime (fp32 and int8): the full model
(`export_onnx`, `OnnxClassifier`) and TR models with the token reduction in the graph (`export_folder`,
`OnnxTRModel`)."""

from .int8 import quantize_int8
from .onnx import OnnxClassifier, OnnxTRModel, export_folder, export_onnx, quantize_onnx_int8

__all__ = ["OnnxClassifier", "OnnxTRModel", "export_folder", "export_onnx", "quantize_int8", "quantize_onnx_int8"]
