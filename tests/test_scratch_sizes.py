"""Scratch sizes: every kernel's C _get_buffer_size equals its Python mirror (mcuformer.codegen.scratch), which
the op table plans with, and the hand-checked formulas."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from kernel_ctypes import AttentionBlockDims, AttentionDims, MlpBlockDims
from test_fused_kernels import lib as lib  # the fused tests' library fixture (every portable kernel)

from mcuformer.codegen.scratch import (
    attention_block_heads_once_scratch_bytes,
    attention_block_heads_scratch_bytes,
    attention_block_scratch_bytes,
    mlp_block_scratch_bytes,
)


def test_attention_buffer_size(lib: ctypes.CDLL) -> None:
    size = lib.mcf_attention_s8_get_buffer_size
    for tokens, channels, heads in [(1, 1, 1), (5, 8, 2), (64, 192, 3), (65, 64, 4), (197, 192, 3)]:
        got = size(ctypes.byref(AttentionDims(tokens, channels, heads)))
        assert got == (tokens + 3) // 4 * 4, (tokens, channels, heads)
        assert got % 4 == 0
    for bad in [(0, 8, 2), (4, 0, 2), (4, 8, 0), (4, 9, 2), (-1, 8, 2)]:
        assert size(ctypes.byref(AttentionDims(*bad))) == 0, bad
    assert size(None) == 0


def _python_size(py_size, dims: tuple[int, ...]) -> int:
    """A Python mirror's size, 0 where it refuses the dims (ValueError), as the C functions return."""
    try:
        return py_size(*dims)
    except ValueError:
        return 0


def test_buffer_sizes_match_python(lib: ctypes.CDLL) -> None:
    """C get_buffer_size == mcuformer.codegen.scratch for many dims; 0 (C) / ValueError (Python) when invalid."""
    rng = np.random.default_rng(8)
    ref = ctypes.byref
    for _ in range(3000):
        big = rng.random() < 0.2
        top = 5000 if big else 80
        tokens, channels, hidden = (int(v) for v in rng.integers(-2, top, 3))
        heads = int(rng.integers(-1, 9))
        ranks = [int(r) if rng.random() < 0.6 else 0 for r in rng.integers(-2, top, 4)]
        block = int(rng.choice([0, 0, 0, 1, 2, -1]))  # the default blocks, one token at a time, invalid
        a_dims = (tokens, channels, heads, ranks[0], ranks[1], block)
        m_dims = (tokens, channels, hidden, ranks[2], ranks[3], block)
        for c_size, py_size, dims, struct in (
            (lib.mcf_attention_block_s8_get_buffer_size, attention_block_scratch_bytes, a_dims, AttentionBlockDims),
            (lib.mcf_attention_block_heads_s8_get_buffer_size, attention_block_heads_scratch_bytes, a_dims,
             AttentionBlockDims),
            (lib.mcf_attention_block_heads_once_s8_get_buffer_size, attention_block_heads_once_scratch_bytes, a_dims,
             AttentionBlockDims),
            (lib.mcf_mlp_block_s8_get_buffer_size, mlp_block_scratch_bytes, m_dims, MlpBlockDims),
        ):  # fmt: skip
            got = c_size(ref(struct(*dims)))
            assert got == _python_size(py_size, dims), (py_size.__name__, dims)
            assert got % 4 == 0
    assert lib.mcf_attention_block_s8_get_buffer_size(None) == 0
    assert lib.mcf_mlp_block_s8_get_buffer_size(None) == 0
    assert lib.mcf_attention_block_heads_once_s8_get_buffer_size(None) == 0
    # The widened normalised input of every block of four tokens and one head's K and V as int16 rows of even
    # length are what the once kernel adds (from 16 tokens on; one token at a time none): 13 x 8 x 48, then 2 x
    # (50 x 16) x 2 bytes; with 65 tokens and 3 x 5 channels the rows are padded: 17 x 8 x 15, 2 x 65 x 6 + 2 x 5
    # x 66.
    dims = (50, 48, 3, 0, 0)
    added = 13 * 8 * 48 + 2 * 2 * 50 * 16
    assert attention_block_heads_once_scratch_bytes(*dims) == attention_block_heads_scratch_bytes(*dims) + added
    dims = (65, 15, 3, 0, 0)
    padded = 17 * 8 * 15 + 2 * 65 * 6 + 2 * 5 * 66
    assert attention_block_heads_once_scratch_bytes(*dims) == attention_block_heads_scratch_bytes(*dims) + padded
    assert attention_block_heads_once_scratch_bytes(10, 48, 3, 8, 0) == attention_block_heads_scratch_bytes(
        10, 48, 3, 8
    )
    huge = 2**31 - 1
    assert lib.mcf_attention_block_s8_get_buffer_size(ref(AttentionBlockDims(huge, huge, 1, 0, 0))) == 0
    assert lib.mcf_mlp_block_s8_get_buffer_size(ref(MlpBlockDims(1, huge, huge, 0, 0))) == 0
    with pytest.raises(ValueError):
        mlp_block_scratch_bytes(1, huge, huge)


def test_buffer_size_formulas() -> None:
    """Hand-checked sizes. Short sequences: the one-token chain, below the brief's d + r1 + hidden + r2 + d. From 16
    tokens on, every variant gets the DSP kernels' 4-token block (3 alignment bytes + 12 bytes per value of the
    widest row, + the score row for attention), which holds the chain."""
    # full rank, short: q/context + proj output (2d) vs q/context + score row (d + tokens)
    assert attention_block_scratch_bytes(10, 64, 4) == 128
    assert attention_block_scratch_bytes(10, 64, 4, qkv_rank=32, proj_rank=16) == 96  # 64 + 32
    assert attention_block_scratch_bytes(65, 64, 4) == 3 + 12 * 64 + 65 + 0  # 836, a multiple of 4
    assert attention_block_scratch_bytes(16, 64, 4, qkv_rank=80) == 3 + 12 * 80 + 16 + 1
    assert mlp_block_scratch_bytes(15, 64, 128) == 64 + 128
    assert mlp_block_scratch_bytes(1, 5, 7, 3, 0) == 12  # max(5+3, 3+7, 7+5) = 12
    assert mlp_block_scratch_bytes(65, 64, 128) == mlp_block_scratch_bytes(16, 64, 128, 32, 32) == 1540
    # One token at a time at any length (the least-memory variant): the short chain, whatever the length.
    assert mlp_block_scratch_bytes(65, 64, 128, block_tokens=1) == mlp_block_scratch_bytes(15, 64, 128) == 192
    assert attention_block_scratch_bytes(65, 64, 4, block_tokens=1) == 64 + 65 + 3  # d + tokens, aligned
    rng = np.random.default_rng(2)
    for _ in range(200):
        d, hidden, r1, r2, tokens = (int(v) for v in rng.integers(1, 300, 5))
        chain = max(d + r1, r1 + hidden, hidden + r2, r2 + d)
        size = mlp_block_scratch_bytes(tokens, d, hidden, r1, r2)
        if tokens < 16:
            assert chain <= size <= d + r1 + hidden + r2 + d + 3
            assert mlp_block_scratch_bytes(tokens, d, hidden) == (d + hidden + 3) // 4 * 4
        else:
            assert chain <= size == (3 + 12 * max(d, hidden, r1, r2) + 3) // 4 * 4
