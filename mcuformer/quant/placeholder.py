"""A weightless int8 model: every tensor of the right shape and dtype, all zeros.

The memory planner needs shapes, not values, so the search can plan thousands of candidate architectures
without building or calibrating a torch model. tests/test_search.py (test_search_end_to_end_compiles_within_budget)
pins that the plan the search promised, made from a placeholder, is the plan of the real compiled model.
"""

from __future__ import annotations

import numpy as np

from mcuformer.arch import ArchConfig
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

_UNIT = QParams(scale=1.0 / 64.0, zero_point=0)
_ONE_MULT, _ONE_SHIFT = spec.quantize_multiplier(1.0)


def _linear(fan_in: int, fan_out: int) -> QLinear:
    return QLinear(
        weight=np.zeros((fan_out, fan_in), np.int8),
        bias=np.zeros(fan_out, np.int32),
        mult=np.full(fan_out, _ONE_MULT, np.int32),
        shift=np.full(fan_out, _ONE_SHIFT, np.int32),
        input=_UNIT,
        output=_UNIT,
    )


def _factored(fan_in: int, fan_out: int, rank: int | None) -> QFactored:
    if rank is None:
        return QFactored(None, _linear(fan_in, fan_out))
    return QFactored(_linear(fan_in, rank), _linear(rank, fan_out))


def _layernorm(dim: int) -> QLayerNorm:
    zeros = np.zeros(dim, np.int32)
    return QLayerNorm(zeros, zeros, 0, _ONE_MULT, _ONE_SHIFT, _UNIT, _UNIT)


def _add() -> QAdd:
    return QAdd(_UNIT, _UNIT, 1 << 14, 1 << 14, 15, _UNIT)


def _block(arch: ArchConfig, layer: int) -> QBlock:
    dim, hidden, ranks = arch.embed_dim, arch.mlp_hidden(layer), arch.ranks[layer]
    qkv_rank = ranks.qkv
    qkv_in = dim if qkv_rank is None else qkv_rank
    attn = QAttention(
        heads=arch.num_heads[layer], q=_UNIT, k=_UNIT, v=_UNIT, score=_UNIT, score_mult=_ONE_MULT,
        score_shift=_ONE_SHIFT, exp_table=np.zeros(256, np.int32), out_mult=_ONE_MULT, out_shift=_ONE_SHIFT,
        output=_UNIT,
    )  # fmt: skip
    return QBlock(
        norm1=_layernorm(dim),
        qkv_v=None if qkv_rank is None else _linear(dim, qkv_rank),
        q=_linear(qkv_in, dim),
        k=_linear(qkv_in, dim),
        v=_linear(qkv_in, dim),
        attn=attn,
        proj=_factored(dim, dim, ranks.proj),
        res1=_add(),
        norm2=_layernorm(dim),
        fc1=_factored(dim, hidden, ranks.fc1),
        gelu_table=np.zeros(256, np.int8),
        fc2=_factored(hidden, dim, ranks.fc2),
        res2=_add(),
    )


def placeholder_qvit(arch: ArchConfig) -> QViT:
    """An int8 model of `arch` with every parameter zero: for planning, never for inference."""
    dim = arch.embed_dim
    return QViT(
        arch=arch,
        input=_UNIT,
        patch_embed=_linear(arch.patch_dim, dim),
        pos_embed=np.zeros((arch.num_patches, dim), np.int8),
        pos_add=_add(),
        cls_row=np.zeros(dim, np.int8) if arch.pool == "cls" else None,
        blocks=tuple(_block(arch, layer) for layer in range(arch.depth)),
        pool=QMeanPool(_UNIT, _ONE_MULT, _ONE_SHIFT, _UNIT) if arch.pool == "mean" else None,
        norm=_layernorm(dim),
        head=_linear(dim, arch.num_classes),
    )
