"""Post-training quantization: calibration statistics from the fp32 model, then the int8 QViT."""

from __future__ import annotations

from collections import defaultdict
from typing import cast

import numpy as np
import torch
from torch import nn

from mcuformer.arch import ArchConfig
from mcuformer.errors import McuformerError
from mcuformer.model import Attention, Block, LowRankLinear, Mlp, PatchEmbed, VisionTransformer
from mcuformer.quant import spec
from mcuformer.quant.qmodel import (
    QAdd,
    QAttention,
    QBlock,
    QFactored,
    QLayerNorm,
    QLinear,
    QMeanPool,
    QParams,
    QViT,
)  # fmt: skip

Calibration = dict[str, tuple[float, float]]
INPUT_QPARAMS = QParams(scale=1.0 / 255.0, zero_point=-128)  # int8 = pixel - 128
FIXED_GRID_SUFFIX = ".probs"  # taps whose int8 grid the spec fixes (softmax output): not calibrated


class QuantizationError(McuformerError):
    pass


@torch.no_grad()
def calibrate(model: VisionTransformer, pixels: torch.Tensor, batch_size: int = 64) -> Calibration:
    """Range of every quantized tensor: the mean over batches of each batch's min and max."""
    mins: dict[str, list[float]] = defaultdict(list)
    maxs: dict[str, list[float]] = defaultdict(list)

    def observe(name: str, tensor: torch.Tensor) -> None:
        if name.endswith(FIXED_GRID_SUFFIX):
            return  # attention probabilities: the spec fixes their grid
        mins[name].append(float(tensor.min()))
        maxs[name].append(float(tensor.max()))

    model.eval()
    for start in range(0, len(pixels), batch_size):
        model(pixels[start : start + batch_size], observe=observe)
    return {name: (float(np.mean(mins[name])), float(np.mean(maxs[name]))) for name in mins}


def _qparams(calibration: Calibration, name: str) -> QParams:
    if name not in calibration:
        raise QuantizationError(f"calibration statistics lack the tensor {name!r}: recalibrate the model")
    scale, zero_point = spec.activation_qparams(*calibration[name])
    return QParams(scale, zero_point)


def _multipliers(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pairs = [spec.quantize_multiplier(float(r)) for r in real]
    return np.array([m for m, _ in pairs], np.int32), np.array([s for _, s in pairs], np.int32)


def quantize_linear(weight: np.ndarray, bias: np.ndarray | None, inp: QParams, out: QParams) -> QLinear:
    """Symmetric per-output-channel int8 weights, int32 bias, per-channel requantization."""
    weight = weight.astype(np.float64)
    w_scale = np.abs(weight).max(axis=1) / 127.0
    w_scale = np.where(w_scale > 0, w_scale, 1.0)
    q_weight = np.clip(np.round(weight / w_scale[:, None]), -127, 127).astype(np.int8)
    acc_scale = inp.scale * w_scale
    bias = np.zeros(weight.shape[0]) if bias is None else bias.astype(np.float64)
    q_bias = np.clip(np.round(bias / acc_scale), -(2**31), 2**31 - 1).astype(np.int32)
    mult, shift = _multipliers(acc_scale / out.scale)
    return QLinear(q_weight, q_bias, mult, shift, inp, out)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _bias(layer: nn.Linear | nn.Conv2d) -> np.ndarray:
    return (
        np.zeros(layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features)
        if layer.bias is None
        else _numpy(layer.bias)
    )


def _factored(layer: LowRankLinear, inp: QParams, out: QParams, calib: Calibration, name: str) -> QFactored:
    if layer.v is None:
        return QFactored(None, quantize_linear(_numpy(layer.u.weight), _bias(layer.u), inp, out))
    mid = _qparams(calib, f"{name}.mid")
    v = quantize_linear(_numpy(layer.v.weight), None, inp, mid)
    return QFactored(v, quantize_linear(_numpy(layer.u.weight), _bias(layer.u), mid, out))


def quantize_layernorm(norm: nn.LayerNorm, inp: QParams, out: QParams) -> QLayerNorm:
    gamma, beta = _numpy(norm.weight), _numpy(norm.bias)
    dim = gamma.shape[0]
    g_scale = max(float(np.abs(gamma).max()), 1e-12) / spec.LN_GAMMA_MAX
    acc_scale = g_scale / (1 << spec.LN_NORM_BITS)  # real value of one unit of n * gamma
    q_gamma = np.round(gamma / g_scale).astype(np.int32)
    q_beta = np.clip(np.round(beta / acc_scale), -(2**31), 2**31 - 1).astype(np.int32)
    eps = min(round(norm.eps * dim * dim / inp.scale**2), 2**62)
    mult, shift = spec.quantize_multiplier(acc_scale / out.scale)
    return QLayerNorm(q_gamma, q_beta, int(eps), mult, shift, inp, out)


def quantize_add(a: QParams, b: QParams, out: QParams) -> QAdd:
    a_mult, b_mult, shift = spec.add_multipliers(a.scale, b.scale, out.scale)
    return QAdd(a, b, a_mult, b_mult, shift, out)


def _quantize_block(block: Block, arch: ArchConfig, layer: int, x: QParams, calib: Calibration) -> QBlock:
    name = f"blocks.{layer}"
    qp = lambda tap: _qparams(calib, f"{name}.{tap}")  # noqa: E731
    norm1 = quantize_layernorm(block.norm1, x, qp("norm1"))
    attn, dim = block.attn, arch.embed_dim
    qkv_v = None
    qkv_in = norm1.output
    if attn.qkv.v is not None:
        qkv_in = qp("attn.qkv.mid")
        qkv_v = quantize_linear(_numpy(attn.qkv.v.weight), None, norm1.output, qkv_in)
    w, b = _numpy(attn.qkv.u.weight), _bias(attn.qkv.u)
    q, k, v = (
        quantize_linear(w[i * dim : (i + 1) * dim], b[i * dim : (i + 1) * dim], qkv_in, qp(f"attn.{part}"))
        for i, part in enumerate("qkv")
    )
    score = qp("attn.scores")
    context = qp("attn.context")
    score_mult, score_shift = spec.quantize_multiplier(q.output.scale * k.output.scale * attn.scale / score.scale)
    out_mult, out_shift = spec.quantize_multiplier(v.output.scale / 256.0 / context.scale)
    q_attn = QAttention(
        heads=attn.num_heads, q=q.output, k=k.output, v=v.output, score=score, score_mult=score_mult,
        score_shift=score_shift, exp_table=spec.exp_table(score.scale), out_mult=out_mult,
        out_shift=out_shift, output=context,
    )  # fmt: skip
    proj = _factored(attn.proj, context, qp("attn.proj"), calib, f"{name}.attn.proj")
    res1 = quantize_add(x, proj.u.output, qp("res1"))
    norm2 = quantize_layernorm(block.norm2, res1.output, qp("norm2"))
    fc1 = _factored(block.mlp.fc1, norm2.output, qp("mlp.fc1"), calib, f"{name}.mlp.fc1")
    act = qp("mlp.act")
    gelu_fn = spec.gelu_tanh if arch.gelu == "tanh" else spec.gelu
    gelu = spec.lut_table(gelu_fn, fc1.u.output.scale, fc1.u.output.zero_point, act.scale, act.zero_point)
    fc2 = _factored(block.mlp.fc2, act, qp("mlp.fc2"), calib, f"{name}.mlp.fc2")
    res2 = quantize_add(res1.output, fc2.u.output, qp("res2"))
    return QBlock(norm1, qkv_v, q, k, v, q_attn, proj, res1, norm2, fc1, gelu, fc2, res2)


def _quantize_tensor(values: np.ndarray, q: QParams) -> np.ndarray:
    return spec.saturate_int8(np.round(values / q.scale) + q.zero_point)


SUPPORTED_LAYERS: tuple[type[nn.Module], ...] = (
    VisionTransformer, PatchEmbed, nn.Conv2d, nn.ModuleList, Block, Attention, LowRankLinear, nn.Linear,
    nn.LayerNorm, Mlp,
)  # fmt: skip


def check_supported(model: nn.Module) -> None:
    """Every layer must be one the int8 lowering knows; anything else is named in the error."""
    for name, module in model.named_modules():
        if type(module) not in SUPPORTED_LAYERS:
            supported = ", ".join(t.__name__ for t in SUPPORTED_LAYERS)
            raise QuantizationError(
                f"layer {name or '<root>'} ({type(module).__name__}) is not supported by the int8 compiler; "
                f"supported layers: {supported}"
            )


@torch.no_grad()
def quantize_model(model: VisionTransformer, calibration: Calibration) -> QViT:
    """The int8 model of an fp32 ViT, from its calibration statistics (deterministic)."""
    check_supported(model)
    arch = model.arch
    mean, std = _numpy(model.pixel_mean).reshape(-1), _numpy(model.pixel_std).reshape(-1)
    conv = _numpy(model.patch_embed.proj.weight)  # [D, C, P, P]
    conv_bias = _bias(model.patch_embed.proj)
    # Fold (x - mean) / std into the patch embedding: the device feeds raw pixels.
    folded = conv / std[None, :, None, None]
    folded_bias = conv_bias - (conv * (mean / std)[None, :, None, None]).sum(axis=(1, 2, 3))
    weight = folded.transpose(0, 2, 3, 1).reshape(arch.embed_dim, arch.patch_dim)  # (row, col, channel)
    patch_q = _qparams(calibration, "patch_embed")
    patch_embed = quantize_linear(weight, folded_bias, INPUT_QPARAMS, patch_q)

    pos = _numpy(model.pos_embed)[0]
    cls_row = None
    tokens_q = _qparams(calibration, "embed")
    if model.cls_token is not None:
        cls_row = _quantize_tensor(_numpy(model.cls_token)[0, 0] + pos[0], tokens_q)
        pos = pos[1:]
    pos_q = QParams(*spec.activation_qparams(float(pos.min()), float(pos.max())))
    pos_add = quantize_add(patch_q, pos_q, tokens_q)

    blocks = []
    x = tokens_q
    for layer, block in enumerate(model.blocks):
        blocks.append(_quantize_block(cast(Block, block), arch, layer, x, calibration))
        x = blocks[-1].res2.output
    pool = None
    if arch.pool == "mean":
        pooled = _qparams(calibration, "pool")
        mult, shift = spec.quantize_multiplier(x.scale / (arch.num_tokens * pooled.scale))
        pool = QMeanPool(x, mult, shift, pooled)
        x = pooled
    norm = quantize_layernorm(model.norm, x, _qparams(calibration, "norm"))
    head = quantize_linear(_numpy(model.head.weight), _bias(model.head), norm.output,
                           _qparams(calibration, "logits"))  # fmt: skip
    return QViT(arch, INPUT_QPARAMS, patch_embed, _quantize_tensor(pos, pos_q), pos_add, cls_row, tuple(blocks),
                pool, norm, head)  # fmt: skip
