"""Quantization-aware training: the fp32 forward with every int8 rounding of the compiled model simulated.

`FakeQuantForward(model, calibration)(model, pixels)` runs the model with
- every weight matrix rounded as `ptq.quantize_linear` rounds it: symmetric int8 per output channel (the patch
  kernel after the input normalisation is folded into it, as `quantize_model` folds it);
- the position embedding rounded on its own int8 grid;
- every tensor the int8 model stores (the `observe` taps) rounded to the int8 grid of its *fixed* calibrated range,
  and the attention probabilities to the softmax's fixed grid (k / 256).

Gradients pass straight through the roundings and stop where a value saturates (torch's fake-quantize ops), so the
weights learn to live with the grids. The ranges stay those of the calibration given: after training,
`quantize_model(model, calibration)` builds exactly the int8 model that was simulated, up to what the simulation
leaves in float (integer LayerNorm, the softmax table, requantization rounding, biases).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import functional_call

from mcuformer.model import LowRankLinear, VisionTransformer
from mcuformer.quant import spec
from mcuformer.quant.ptq import FIXED_GRID_SUFFIX, Calibration

WEIGHT_QMAX = 127  # symmetric int8 weights in [-127, 127], as ptq.quantize_linear


def fake_quant_weight(weight: Tensor) -> Tensor:
    """Per-output-channel symmetric int8 rounding of a [out, ...] weight, straight-through gradient."""
    flat = weight.detach().reshape(weight.shape[0], -1)
    scale = flat.abs().amax(dim=1).double() / WEIGHT_QMAX
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = torch.zeros(weight.shape[0], dtype=torch.int32, device=weight.device)
    return torch.fake_quantize_per_channel_affine(weight, scale.float(), zero, 0, -WEIGHT_QMAX, WEIGHT_QMAX)


def fake_quant_range(tensor: Tensor, low: float, high: float) -> Tensor:
    """Rounding to the int8 grid of a [low, high] range (`spec.activation_qparams`), saturating outside it."""
    scale, zero_point = spec.activation_qparams(low, high)
    return torch.fake_quantize_per_tensor_affine(tensor, scale, zero_point, spec.INT8_MIN, spec.INT8_MAX)


def quantized_weight_names(model: VisionTransformer) -> list[str]:
    """Names of the weight matrices that the int8 model stores per output channel (block linears and factors,
    the head); the patch kernel is handled apart because of the folded normalisation."""
    names = ["head.weight"]
    for name, module in model.named_modules():
        if isinstance(module, LowRankLinear):
            names.append(f"{name}.u.weight")
            if module.v is not None:
                names.append(f"{name}.v.weight")
    return names


class FakeQuantForward:
    """A forward pass as the int8 model computes it (approximately), for training with fixed activation ranges."""

    def __init__(self, model: VisionTransformer, calibration: Calibration) -> None:
        self.calibration = dict(calibration)
        self.weight_names = quantized_weight_names(model)
        missing = [n for n in _tap_names(model) if n not in self.calibration and not n.endswith(FIXED_GRID_SUFFIX)]
        if missing:
            raise ValueError(f"calibration statistics lack {missing[:3]}: recalibrate the model before QAT")

    def _activation(self, name: str, tensor: Tensor) -> Tensor:
        if name.endswith(FIXED_GRID_SUFFIX):  # softmax output: k/256 for k in 0..255, as ops.softmax stores it
            return torch.fake_quantize_per_tensor_affine(tensor, spec.SOFTMAX_OUT_SCALE, spec.SOFTMAX_OUT_ZERO_POINT,
                                                         spec.INT8_MIN, spec.INT8_MAX)  # fmt: skip
        return fake_quant_range(tensor, *self.calibration[name])

    def __call__(self, model: VisionTransformer, pixels: Tensor) -> Tensor:
        params: dict[str, Tensor] = dict(model.named_parameters())
        for name in self.weight_names:
            params[name] = fake_quant_weight(params[name])
        # The device's patch kernel is the fp32 kernel divided by the input std per channel: round that one.
        std = model.pixel_std.reshape(1, -1, 1, 1)
        params["patch_embed.proj.weight"] = fake_quant_weight(params["patch_embed.proj.weight"] / std) * std
        pos = params["pos_embed"]
        first = 1 if model.cls_token is not None else 0  # the class row is stored at the token scale instead
        grid = pos[:, first:]
        rounded = fake_quant_range(grid, float(grid.detach().min()), float(grid.detach().max()))
        params["pos_embed"] = torch.cat([pos[:, :first], rounded], dim=1)
        return functional_call(model, params, (pixels,), {"observe": self._activation})


def _tap_names(model: VisionTransformer) -> list[str]:
    """The tap names a forward of this model reports (what the calibration must cover)."""
    seen: list[str] = []
    with torch.no_grad():
        was_training = model.training
        model.eval()
        size = model.arch.image_size
        pixels = torch.zeros(1, model.arch.channels, size, size, device=model.pos_embed.device)
        model(pixels, observe=lambda name, _: seen.append(name))
        model.train(was_training)
    return seen
