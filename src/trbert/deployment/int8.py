"""int8 weights in PyTorch for CPU inference: `quantize_int8(model)` on a trbert or plain transformers model.

`quantize_int8` leaves the token-reduction policy networks in fp32: they are tiny, and their keep
decisions are thresholds on a probability, so int8 noise there changes which tokens go on.
"""

import copy
import warnings

import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear
from torch.ao.quantization import PerChannelMinMaxObserver, per_channel_dynamic_qconfig, quantize_dynamic

from ..reduction import TRBertEncoder

# Weights on 7 bits (one scale per output row), activations on all 8, as `quantize_onnx_int8` does:
# a pair of u8 x s7 products fits the 16-bit sums of CPUs without VNNI, so no CPU needs a narrower
# range. (torch's own default, 8-bit weights and 7-bit activations, rounds the activations twice as
# coarsely and quantizes otherwise than ONNX Runtime.)
INT8_QCONFIG = per_channel_dynamic_qconfig._replace(weight=PerChannelMinMaxObserver.with_args(
    dtype=torch.qint8, qscheme=torch.per_channel_symmetric, quant_min=-64, quant_max=63))


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of `model` (in eval mode) whose `nn.Linear` layers have int8 weights and dynamically
    quantized int8 activations; the policy networks (`encoder.policy`, `encoder.exits`) stay fp32.
    Weights take 7 bits and activations 8 (`INT8_QCONFIG`), on every CPU.

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
        encoder.fuse_query_key_value()  # one int8 call instead of three per layer
    fp32 = {id(m) for name in ("policy", "exits") for m in getattr(encoder, name, nn.Module()).modules()}
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated but still the working int8 path for CPU inference.
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor")
        # One weight scale per output row: as fast as one per matrix; on MiniLM it halves 1 - cosine of the outputs.
        spec = {
            name: INT8_QCONFIG
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
    forward makes on every call, which cost as much as the arithmetic when a call has few tokens."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _LINEAR_INT8(x, self._packed_params._packed_params, False)  # False: activations on 8 bits
