"""Python mirrors of the kernels' `_get_buffer_size` functions (tests compare them with the C ones)."""

from __future__ import annotations

from mcuformer.quant.fused import BLOCK_MIN_TOKENS, BLOCK_TOKENS


def _align4(n: int) -> int:
    return (n + 3) // 4 * 4


def attention_scratch_bytes(tokens: int, channels: int, heads: int) -> int:
    """mcf_attention_s8_get_buffer_size: one int8 score/probability row of `tokens` values, word aligned."""
    if tokens <= 0 or channels <= 0 or heads <= 0 or channels % heads:
        raise ValueError(f"invalid attention dims tokens={tokens} channels={channels} heads={heads}")
    return _align4(tokens)


def patch_embed_rows_scratch_bytes(width: int, patch: int, out_ch: int) -> int:
    """mcf_patch_embed_rows_s8_get_buffer_size: one patch row of tokens, word aligned."""
    return _align4(width // patch * out_ch)


def attention_block_heads_scratch_bytes(tokens: int, channels: int, heads: int, qkv_rank: int = 0,
                                        proj_rank: int = 0) -> int:  # fmt: skip
    """mcf_attention_block_heads_s8_get_buffer_size.

    From BLOCK_MIN_TOKENS tokens on, room for blocks of 4 tokens: 3 + 8 * max(width, tokens) + 4 * (width +
    tokens) with width = max(d, ranks); shorter sequences: max(d + qkv_rank + head_dim + tokens, proj_rank + d).
    """
    if tokens <= 0 or channels <= 0 or heads <= 0 or channels % heads or qkv_rank < 0 or proj_rank < 0:
        raise ValueError(f"invalid attention block dims tokens={tokens} channels={channels} heads={heads}")
    if tokens >= BLOCK_MIN_TOKENS:
        width = max(channels, qkv_rank, proj_rank)
        return _align4(3 + 8 * max(width, tokens) + BLOCK_TOKENS * (width + tokens))
    return _align4(max(channels + qkv_rank + channels // heads + tokens, proj_rank + channels))
