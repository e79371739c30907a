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

# Weights on 7 bits (codes in [-64, 64], one scale per output row) and activations on 8 (per token, see
# `_Int8Linear`), exactly as `quantize_onnx_int8` does: a pair of u8 x s7 products fits the 16-bit sums
# of CPUs without VNNI (255 x 64 x 2 < 32,768), so no CPU needs a narrower range. (torch's own default,
# 8-bit weights and 7-bit activations on one scale per call, rounds the activations twice as coarsely
# and makes a token's outputs depend on its batch.)
INT8_QCONFIG = per_channel_dynamic_qconfig._replace(weight=PerChannelMinMaxObserver.with_args(
    dtype=torch.qint8, qscheme=torch.per_channel_symmetric, quant_min=-64, quant_max=64))


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of `model` (in eval mode) whose `nn.Linear` layers have int8 weights and dynamically
    quantized int8 activations; the policy networks (`encoder.policy`, `encoder.exits`) stay fp32.
    Weights take 7 bits and activations 8 (`INT8_QCONFIG`), on every CPU. Each token's activations are
    rounded on their own scale, so an example's outputs do not depend on its batch.

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
            module.prepare_per_token()
    return quantized.eval()


_LINEAR_INT8 = torch.ops.quantized.linear_dynamic.default


class _Int8Linear(DynamicInt8Linear):
    """torch's dynamic int8 linear layer, with activations quantized per token rather than per call.

    torch quantizes a call's whole input with one scale, so a token's rounding would depend on the other
    tokens of the call, i.e. on its batch. Here each token is first divided by its largest magnitude, and a
    fixed row [1, -1, 0, ...] goes along, so every call's input spans exactly [-1, 1]: the kernel's one
    scale is then the same for every call and each token is in effect rounded on its own scale. The
    products are multiplied back by the tokens' magnitudes, and the fp32 bias added after. The forward
    skips the checks torch makes on every call, which cost as much as the arithmetic when a call has few
    tokens."""

    def prepare_per_token(self) -> None:
        """Pack the weights without the bias (`forward` adds it once the products are scaled back) and keep
        the fixed row."""
        weight, bias = self._packed_params._weight_bias()
        self._packed_params.set_weight_bias(weight, None)
        self.register_buffer("fp32_bias", bias)
        anchor = torch.zeros(1, self.in_features)
        anchor[0, :2] = torch.tensor([1.0, -1.0])
        self.register_buffer("anchor", anchor, persistent=False)

    def _weight_bias(self):
        return self._packed_params._weight_bias()[0], self.fp32_bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        n = rows.shape[0]
        # Largest magnitude from the largest and the smallest value: two reads, no |x| written out.
        magnitude = torch.maximum(rows.amax(-1, keepdim=True), rows.amin(-1, keepdim=True).neg_())
        magnitude.clamp_min_(1e-30)  # an all-zero token stays 0
        normed = torch.empty(n + 1, rows.shape[1], dtype=rows.dtype)
        normed[n:] = self.anchor
        torch.div(rows, magnitude, out=normed[:n])
        y = _LINEAR_INT8(normed, self._packed_params._packed_params, False)[:n]  # False: activations on 8 bits
        if self.fp32_bias is None:
            return y.mul_(magnitude).view(*x.shape[:-1], y.shape[-1])
        return torch.addcmul(self.fp32_bias, magnitude, y, out=y).view(*x.shape[:-1], y.shape[-1])
