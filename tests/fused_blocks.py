"""Random quantized transformer blocks (QBlock, built with the PTQ helpers from random float weights, their
activation ranges calibrated by a float forward pass) and their fused-kernel structs (mcf_fused.h through ctypes),
shared by the fused kernel tests."""

from __future__ import annotations

import ctypes
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from kernel_ctypes import (
    AddParams,
    AttentionBlockDims,
    AttentionBlockParams,
    AttentionParams,
    ChannelQuant,
    FactoredLinear,
    LayerNormLayer,
    LayerNormParams,
    LinearLayer,
    LinearParams,
    MlpBlockDims,
    MlpBlockParams,
)

from mcuformer.codegen.layout import widen_weights
from mcuformer.quant import spec
from mcuformer.quant.ptq import quantize_add, quantize_layernorm, quantize_linear
from mcuformer.quant.qmodel import QAdd, QAttention, QBlock, QFactored, QLayerNorm, QLinear, QParams

CHANNELS = (8, 12, 16, 24, 48)

# ------------------------------------------------------------------------------------------ random blocks


def i8(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.integers(-128, 127, shape, dtype=np.int8, endpoint=True)


@dataclass(frozen=True)
class BlockConfig:
    tokens: int
    channels: int
    heads: int
    hidden: int
    qkv_rank: int  # 0: full rank
    proj_rank: int
    fc1_rank: int
    fc2_rank: int


def random_config(rng: np.random.Generator, tokens: int | None = None) -> BlockConfig:
    channels = int(rng.choice(CHANNELS))
    heads = int(rng.choice([h for h in range(1, 5) if channels % h == 0]))
    hidden = channels * int(rng.integers(1, 5))

    def rank(fan_in: int, fan_out: int) -> int:
        return int(rng.integers(1, min(fan_in, fan_out) + 1)) if rng.random() < 0.5 else 0

    return BlockConfig(
        tokens if tokens is not None else int(rng.integers(1, 71)), channels, heads, hidden,
        rank(channels, channels), rank(channels, channels), rank(channels, hidden), rank(hidden, channels),
    )  # fmt: skip


def _layernorm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(x.var(axis=-1, keepdims=True) + 1e-5) * gamma + beta


def _softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _torch_layernorm(gamma: np.ndarray, beta: np.ndarray) -> torch.nn.LayerNorm:
    norm = torch.nn.LayerNorm(len(gamma))
    with torch.no_grad():
        norm.weight.copy_(torch.from_numpy(gamma))
        norm.bias.copy_(torch.from_numpy(beta))
    return norm


def random_block(rng: np.random.Generator, cfg: BlockConfig) -> tuple[QBlock, np.ndarray]:
    """A QBlock from random float weights, quantized with ranges from a float forward pass of x; and x."""
    d, hidden = cfg.channels, cfg.hidden
    x_q = QParams(float(10 ** rng.uniform(-2, -0.5)), int(rng.integers(-40, 41)))
    x = i8(rng, cfg.tokens, d)

    def weight(fan_out: int, fan_in: int) -> np.ndarray:
        return rng.normal(0, 1 / math.sqrt(fan_in), (fan_out, fan_in))

    def vector(n: int, mean: float, std: float) -> np.ndarray:
        return rng.normal(mean, std, n)

    def factored_weights(fan_in: int, fan_out: int, rank: int) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        if rank == 0:
            return None, weight(fan_out, fan_in), vector(fan_out, 0, 0.1)
        return weight(rank, fan_in), weight(fan_out, rank), vector(fan_out, 0, 0.1)

    g1, b1, g2, b2 = vector(d, 1, 0.3), vector(d, 0, 0.2), vector(d, 1, 0.3), vector(d, 0, 0.2)
    qkv_v = weight(cfg.qkv_rank, d) if cfg.qkv_rank else None
    qkv_in = cfg.qkv_rank or d
    w_qkv = [weight(d, qkv_in) for _ in range(3)]
    b_qkv = [vector(d, 0, 0.1) for _ in range(3)]
    proj, fc1, fc2 = (
        factored_weights(d, d, cfg.proj_rank),
        factored_weights(d, hidden, cfg.fc1_rank),
        factored_weights(hidden, d, cfg.fc2_rank),
    )

    # float forward: the calibration ranges of every tensor
    taps: dict[str, np.ndarray] = {}

    def tap(name: str, value: np.ndarray) -> np.ndarray:
        taps[name] = value
        return value

    def run_factored(name: str, inp: np.ndarray, w: tuple[np.ndarray | None, np.ndarray, np.ndarray]) -> np.ndarray:
        if w[0] is not None:
            inp = tap(f"{name}.mid", inp @ w[0].T)
        return tap(name, inp @ w[1].T + w[2])

    xf = (x.astype(np.float64) - x_q.zero_point) * x_q.scale
    h = tap("norm1", _layernorm(xf, g1, b1))
    t = tap("qkv.mid", h @ qkv_v.T) if qkv_v is not None else h
    q, k, v = (tap(n, t @ w.T + b) for n, w, b in zip("qkv", w_qkv, b_qkv, strict=True))
    head_dim = d // cfg.heads
    split = [a.reshape(cfg.tokens, cfg.heads, head_dim).transpose(1, 0, 2) for a in (q, k, v)]
    scores = tap("scores", split[0] @ split[1].transpose(0, 2, 1) / math.sqrt(head_dim))
    context = tap("context", (_softmax(scores) @ split[2]).transpose(1, 0, 2).reshape(cfg.tokens, d))
    res1 = tap("res1", xf + run_factored("proj", context, proj))
    h2 = tap("norm2", _layernorm(res1, g2, b2))
    act = tap("act", spec.gelu(run_factored("fc1", h2, fc1)))
    tap("res2", res1 + run_factored("fc2", act, fc2))

    def qp(name: str) -> QParams:
        low, high = float(taps[name].min()), float(taps[name].max())
        if rng.random() < 0.25:  # narrower (saturating) or wider ranges than calibrated
            low, high = (v * float(rng.uniform(0.4, 1.6)) for v in (low, high))
        return QParams(*spec.activation_qparams(low, high))

    def q_factored(name: str, inp: QParams, w: tuple[np.ndarray | None, np.ndarray, np.ndarray]) -> QFactored:
        if w[0] is None:
            return QFactored(None, quantize_linear(w[1], w[2], inp, qp(name)))
        mid = qp(f"{name}.mid")
        return QFactored(quantize_linear(w[0], None, inp, mid), quantize_linear(w[1], w[2], mid, qp(name)))

    norm1 = quantize_layernorm(_torch_layernorm(g1, b1), x_q, qp("norm1"))
    q_qkv_v = None if qkv_v is None else quantize_linear(qkv_v, None, norm1.output, qp("qkv.mid"))
    qkv_q = norm1.output if q_qkv_v is None else q_qkv_v.output
    lq, lk, lv = (quantize_linear(w, b, qkv_q, qp(n)) for n, w, b in zip("qkv", w_qkv, b_qkv, strict=True))
    score, ctx = qp("scores"), qp("context")
    score_mult, score_shift = spec.quantize_multiplier(
        lq.output.scale * lk.output.scale / math.sqrt(head_dim) / score.scale
    )
    out_mult, out_shift = spec.quantize_multiplier(lv.output.scale / 256.0 / ctx.scale)
    attn = QAttention(
        cfg.heads, lq.output, lk.output, lv.output, score, score_mult, score_shift, spec.exp_table(score.scale),
        out_mult, out_shift, ctx,
    )  # fmt: skip
    q_proj = q_factored("proj", ctx, proj)
    res1_add = quantize_add(x_q, q_proj.u.output, qp("res1"))
    norm2 = quantize_layernorm(_torch_layernorm(g2, b2), res1_add.output, qp("norm2"))
    q_fc1 = q_factored("fc1", norm2.output, fc1)
    act_q = qp("act")
    gelu = spec.lut_table(spec.gelu, q_fc1.u.output.scale, q_fc1.u.output.zero_point, act_q.scale, act_q.zero_point)
    q_fc2 = q_factored("fc2", act_q, fc2)
    res2_add = quantize_add(res1_add.output, q_fc2.u.output, qp("res2"))
    block = QBlock(norm1, q_qkv_v, lq, lk, lv, attn, q_proj, res1_add, norm2, q_fc1, gelu, q_fc2, res2_add)
    return block, x


def random_blocks(seed: int, count: int) -> Iterator[tuple[BlockConfig, QBlock, np.ndarray]]:
    rng = np.random.default_rng(seed)
    made = 0
    while made < count:
        cfg = random_config(rng, tokens=1 if made == 0 else (70 if made == 1 else None))
        try:
            block, x = random_block(rng, cfg)
        except ValueError:  # a rescale the int8 spec cannot express (rare): draw again
            continue
        made += 1
        yield cfg, block, x


def attention_half(block: QBlock, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """run_block's attention half: (x after res1, K, V)."""
    h = block.norm1(x)
    t = block.qkv_v(h) if block.qkv_v is not None else h
    k, v = block.k(t), block.v(t)
    return block.res1(x, block.proj(block.attn(block.q(t), k, v))), k, v


# ------------------------------------------------------------------------------------- the kernels' structs


@dataclass
class CBlock:
    """A QBlock as the fused kernels' structs; `keep` holds every array and struct the pointers refer to."""

    attn_dims: AttentionBlockDims
    attn: AttentionBlockParams
    mlp_dims: MlpBlockDims
    mlp: MlpBlockParams
    keep: list[object] = field(default_factory=list)


def _rank(layer: QFactored) -> int:
    return 0 if layer.v is None else layer.v.weight.shape[0]


def c_block(block: QBlock, tokens: int, widened: bool = False) -> CBlock:
    """`widened`: every linear with its weights in the int16 layout codegen can emit (codegen.layout)."""
    keep: list[object] = []

    def arr(values: np.ndarray, dtype: type) -> int:
        a: np.ndarray = np.ascontiguousarray(values, dtype=dtype)
        keep.append(a)
        return a.ctypes.data

    def linear(layer: QLinear) -> LinearLayer:
        quant = ChannelQuant(arr(layer.mult, np.int32), arr(layer.shift, np.int8))
        params = LinearParams(layer.input.zero_point, layer.output.zero_point)
        bias = arr(layer.bias, np.int32)
        if widened:
            return LinearLayer(params, quant, None, arr(widen_weights(layer.weight), np.int16), bias)
        return LinearLayer(params, quant, arr(layer.weight, np.int8), None, bias)

    def linear_ptr(layer: QLinear | None) -> int | None:
        if layer is None:
            return None
        struct = linear(layer)
        keep.append(struct)
        return ctypes.addressof(struct)

    def factored(layer: QFactored) -> FactoredLinear:
        return FactoredLinear(linear_ptr(layer.v), linear(layer.u))

    def norm(n: QLayerNorm) -> LayerNormLayer:
        params = LayerNormParams(n.input.zero_point, n.eps, n.mult, n.shift, n.output.zero_point)
        return LayerNormLayer(params, arr(n.gamma, np.int16), arr(n.beta, np.int32))

    def add(a: QAdd) -> AddParams:
        return AddParams(a.a.zero_point, a.b.zero_point, a.a_mult, a.b_mult, a.shift, a.output.zero_point)

    at = block.attn
    attention = AttentionParams(
        at.q.zero_point, at.k.zero_point, at.v.zero_point, at.score_mult, at.score_shift, at.score.zero_point,
        at.out_mult, at.out_shift, at.output.zero_point,
    )  # fmt: skip
    channels = block.q.weight.shape[0]
    qkv_rank = 0 if block.qkv_v is None else block.qkv_v.weight.shape[0]
    attn_params = AttentionBlockParams(
        norm(block.norm1), linear_ptr(block.qkv_v), linear(block.q), linear(block.k), linear(block.v), attention,
        arr(at.exp_table, np.int32), factored(block.proj), add(block.res1),
    )  # fmt: skip
    attn_dims = AttentionBlockDims(tokens, channels, at.heads, qkv_rank, _rank(block.proj))
    hidden = block.fc1.u.weight.shape[0]
    mlp_params = MlpBlockParams(
        norm(block.norm2), factored(block.fc1), arr(block.gelu_table, np.int8), factored(block.fc2), add(block.res2)
    )
    mlp_dims = MlpBlockDims(tokens, channels, hidden, _rank(block.fc1), _rank(block.fc2))
    return CBlock(attn_dims, attn_params, mlp_dims, mlp_params, keep)
