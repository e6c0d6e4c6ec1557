"""Python mirrors of the kernels' `_get_buffer_size` functions (tests compare them with the C ones)."""

from __future__ import annotations


def _align4(n: int) -> int:
    return (n + 3) // 4 * 4


def attention_scratch_bytes(tokens: int, channels: int, heads: int) -> int:
    """mcf_attention_s8_get_buffer_size: PLACEHOLDER until the kernel defines its layout."""
    head_dim = channels // heads
    return _align4(tokens) + 4 * head_dim + _align4(channels)
