"""The quantized ViT: typed, frozen int8 parameters for every op (what PTQ produces and codegen lowers)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuformer.arch import ArchConfig
from mcuformer.quant import ops


@dataclass(frozen=True)
class QParams:
    """Per-tensor int8 activation quantization: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int


@dataclass(frozen=True, eq=False)
class QLinear:
    weight: np.ndarray  # int8 [out, in], symmetric per output channel
    bias: np.ndarray  # int32 [out], at scale input.scale * weight_scale[out]
    mult: np.ndarray  # int32 [out]
    shift: np.ndarray  # int32 [out]
    input: QParams
    output: QParams

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ops.linear(
            x, self.weight, self.bias, self.mult, self.shift, self.input.zero_point, self.output.zero_point
        )


@dataclass(frozen=True, eq=False)
class QFactored:
    """A linear that may be low rank: the optional V factor (to the rank), then U."""

    v: QLinear | None
    u: QLinear

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.u(self.v(x) if self.v is not None else x)


@dataclass(frozen=True, eq=False)
class QLayerNorm:
    gamma: np.ndarray  # int32 [D], int16-ranged (the kernels take int16: codegen.lower.norm_gamma checks)
    beta: np.ndarray  # int32 [D]
    eps: int
    mult: int
    shift: int
    input: QParams
    output: QParams

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ops.layernorm(
            x,
            self.gamma,
            self.beta,
            self.input.zero_point,
            self.eps,
            self.mult,
            self.shift,
            self.output.zero_point,
        )


@dataclass(frozen=True)
class QAdd:
    a: QParams
    b: QParams
    a_mult: int
    b_mult: int
    shift: int
    output: QParams

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return ops.add(
            a,
            b,
            self.a.zero_point,
            self.b.zero_point,
            self.a_mult,
            self.b_mult,
            self.shift,
            self.output.zero_point,
        )


@dataclass(frozen=True, eq=False)
class QAttention:
    heads: int
    q: QParams
    k: QParams
    v: QParams
    score: QParams
    score_mult: int
    score_shift: int
    exp_table: np.ndarray  # int32 [256], Q15
    out_mult: int
    out_shift: int
    output: QParams

    def __call__(self, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        return ops.attention(
            q, k, v, self.heads, self.q.zero_point, self.k.zero_point, self.v.zero_point,
            self.score_mult, self.score_shift, self.score.zero_point, self.exp_table,
            self.out_mult, self.out_shift, self.output.zero_point,
        )  # fmt: skip


@dataclass(frozen=True, eq=False)
class QBlock:
    norm1: QLayerNorm
    qkv_v: QLinear | None  # shared V factor of a low-rank qkv
    q: QLinear
    k: QLinear
    v: QLinear
    attn: QAttention
    proj: QFactored
    res1: QAdd
    norm2: QLayerNorm
    fc1: QFactored
    gelu_table: np.ndarray  # int8 [256]
    fc2: QFactored
    res2: QAdd


@dataclass(frozen=True)
class QMeanPool:
    input: QParams
    mult: int
    shift: int
    output: QParams


@dataclass(frozen=True, eq=False)
class QViT:
    arch: ArchConfig
    input: QParams  # int8 pixel - 128 at scale 1/255 (normalisation is folded into the patch embedding)
    patch_embed: QLinear  # weight [D, P*P*C] in (row, col, channel) order
    pos_embed: np.ndarray  # int8 [patches, D] added to the patch tokens
    pos_add: QAdd
    cls_row: np.ndarray | None  # int8 [D]: class token + its position, at the token scale
    blocks: tuple[QBlock, ...]
    pool: QMeanPool | None
    norm: QLayerNorm
    head: QLinear

    @property
    def logits(self) -> QParams:
        return self.head.output
