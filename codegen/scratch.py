"""Python mirrors of the kernels' `_get_buffer_size` functions: the scratch each kernel asks for.

The op table (`ops.py`) sizes every op's scratch with these; tests compare them with the C functions over many
random dims, and `MCF_CHECK_SCRATCH` host builds check every planned op against its kernel.

The fused per-token blocks (firmware/kernels/include/mcf_fused.h) run a block's two halves token by token, in place
on the residual stream x [tokens][d]. Short sequences use a chain of per-token buffers, each written by an op from
the previous one (so an op's input and output must not overlap); even-indexed buffers start the scratch and odd-
indexed ones end it, so the scratch needs max(c[i] + c[i + 1]) over consecutive chain buffers; the attention half
also keeps one score row (`tokens` bytes) beside the q/context row. The C functions use the equivalent closed forms
(a rank of 0 counting as d in the first):
    attention: d + max(qkv_rank, proj_rank, tokens)
    MLP:       max(fc1_rank + max(d, hidden) or d + hidden, fc2_rank + max(d, hidden) or d + hidden)
Sizes are rounded up to a multiple of 4.
"""

from __future__ import annotations

INT32_MAX = 2**31 - 1
# mcf_fused.h: sequences of at least BLOCK_MIN_TOKENS tokens get a scratch for the DSP kernels' 4-token blocks,
# BLOCK_ROW_BYTES per value of the widest row (4 tokens x (int16 + int8)); shorter ones the one-token chain.
BLOCK_MIN_TOKENS = 16
BLOCK_TOKENS = 4  # MCF_FUSED_BLOCK_TOKENS
BLOCK_ROW_BYTES = 12
# The dims' block_tokens (MCF_FUSED_BLOCKS_DEFAULT, MCF_FUSED_ONE_TOKEN): the default blocks, or one token at a
# time at any length (the one-token chain's scratch; the planner's least-memory variant).
BLOCKS_DEFAULT, ONE_TOKEN = 0, 1
BLOCK_CHOICES = (BLOCKS_DEFAULT, ONE_TOKEN)


def uses_blocks(tokens: int, block_tokens: int = BLOCKS_DEFAULT) -> bool:
    """mcf_fused_uses_blocks: whether a fused kernel runs (and sizes its scratch for) blocks of tokens."""
    return tokens >= BLOCK_MIN_TOKENS and block_tokens != ONE_TOKEN


def _align4(n: int) -> int:
    return (n + 3) // 4 * 4


def _even(n: int) -> int:
    return (n + 1) // 2 * 2


def _chain_need(chain: list[int]) -> int:
    return max(a + b for a, b in zip(chain, chain[1:], strict=False))


def _checked(size: int, what: str) -> int:
    if size > INT32_MAX - 3:
        raise ValueError(f"{what} scratch of {size} bytes does not fit int32")
    return _align4(size)


def attention_scratch_bytes(tokens: int, channels: int, heads: int) -> int:
    """mcf_attention_s8_get_buffer_size: one int8 score/probability row of `tokens` values, word aligned."""
    if tokens <= 0 or channels <= 0 or heads <= 0 or channels % heads:
        raise ValueError(f"invalid attention dims tokens={tokens} channels={channels} heads={heads}")
    return _align4(tokens)


# The largest patch (values: patch^2 x channels) the DSP patch-row kernel runs in token blocks (when its dims'
# `blocks` asks for them), its widened block of four patches in the scratch; larger ones take the pair kernel
# (MCF_PATCH_BLOCK_INPUTS and MCF_PATCH_BLOCKS in mcf_fused.h).
PATCH_BLOCK_INPUTS = 64
PATCH_BLOCKS = 1


def patch_values(dims: dict[str, int]) -> int:
    """The values of one patch of a patch embedding's dims: the length of its dot products."""
    return dims["patch"] ** 2 * dims["channels"]


def patch_row_blocks(dims: dict[str, int]) -> bool:
    """Whether a patch-row op's dims run its patches in token blocks on the DSP kernels (mcf_patch_rows_in_blocks):
    asked for, patches of up to PATCH_BLOCK_INPUTS values, at least a block of four patches a row."""
    return (dims.get("blocks") == PATCH_BLOCKS and patch_values(dims) <= PATCH_BLOCK_INPUTS
            and dims["width"] // dims["patch"] >= BLOCK_TOKENS)  # fmt: skip


def patch_embed_rows_scratch_bytes(height: int, width: int, channels: int, patch: int, out_ch: int,
                                   blocks: int = 0) -> int:  # fmt: skip
    """mcf_patch_embed_rows_s8_get_buffer_size: one patch row of tokens, then where patch_row_blocks the DSP
    kernel's widened block of four (3 bytes for alignment, 8 per value), word aligned; the same for every kernel
    variant."""
    dims = {"height": height, "width": width, "channels": channels, "patch": patch, "blocks": blocks}
    widened = 3 + 8 * patch_values(dims) if patch_row_blocks(dims) else 0
    return _align4(width // patch * out_ch + widened)


def attention_block_scratch_bytes(tokens: int, channels: int, heads: int, qkv_rank: int = 0, proj_rank: int = 0,
                                  block_tokens: int = BLOCKS_DEFAULT) -> int:  # fmt: skip
    """mcf_attention_block_s8_get_buffer_size; ranks 0 mean full rank (no V factor).

    The same for every kernel variant. Short sequences: the chain [d, qkv_rank?, d, proj_rank?, d], max(max
    consecutive sum, d + tokens); from BLOCK_MIN_TOKENS tokens on, the DSP kernel's widened input, int8 block rows
    and score row (firmware/kernels/include/mcf_dsp_fused.h): 3 + 12 * max(d, ranks) + tokens. Word aligned.
    """
    if (tokens <= 0 or channels <= 0 or heads <= 0 or channels % heads or qkv_rank < 0 or proj_rank < 0
            or block_tokens not in BLOCK_CHOICES):  # fmt: skip
        raise ValueError(
            f"invalid attention block dims tokens={tokens} channels={channels} heads={heads} "
            f"qkv_rank={qkv_rank} proj_rank={proj_rank} block_tokens={block_tokens}"
        )
    if uses_blocks(tokens, block_tokens):
        return _checked(3 + BLOCK_ROW_BYTES * max(channels, qkv_rank, proj_rank) + tokens, "attention block")
    chain = [channels, *([qkv_rank] if qkv_rank else []), channels, *([proj_rank] if proj_rank else []), channels]
    return _checked(max(_chain_need(chain), channels + tokens), "attention block")


def attention_block_heads_scratch_bytes(tokens: int, channels: int, heads: int, qkv_rank: int = 0,
                                        proj_rank: int = 0, block_tokens: int = BLOCKS_DEFAULT) -> int:  # fmt: skip
    """mcf_attention_block_heads_s8_get_buffer_size.

    From BLOCK_MIN_TOKENS tokens on, room for blocks of 4 tokens: 3 + 8 * max(width, tokens) + 4 * (width +
    tokens) with width = max(d, ranks); shorter sequences: max(d + qkv_rank + head_dim + tokens, proj_rank + d).
    """
    if (tokens <= 0 or channels <= 0 or heads <= 0 or channels % heads or qkv_rank < 0 or proj_rank < 0
            or block_tokens not in BLOCK_CHOICES):  # fmt: skip
        raise ValueError(f"invalid attention block dims tokens={tokens} channels={channels} heads={heads}")
    if uses_blocks(tokens, block_tokens):
        width = max(channels, qkv_rank, proj_rank)
        return _align4(3 + 8 * max(width, tokens) + BLOCK_TOKENS * (width + tokens))
    return _align4(max(channels + qkv_rank + channels // heads + tokens, proj_rank + channels))


def attention_block_heads_once_scratch_bytes(tokens: int, channels: int, heads: int, qkv_rank: int = 0,
                                             proj_rank: int = 0, block_tokens: int = 0) -> int:  # fmt: skip
    """mcf_attention_block_heads_once_s8_get_buffer_size: the per-head scratch, plus from BLOCK_MIN_TOKENS tokens
    on every token's normalised input widened (8 x (qkv_rank or d) bytes per block of BLOCK_TOKENS) and one
    head's K and V widened to int16, each row padded to an even length (mcf_dsp_widen_rows16)."""
    heads_part = attention_block_heads_scratch_bytes(tokens, channels, heads, qkv_rank, proj_rank, block_tokens)
    if not uses_blocks(tokens, block_tokens):
        return heads_part
    head_dim = channels // heads
    wide_kv = 2 * tokens * _even(head_dim) + 2 * head_dim * _even(tokens)
    kept = -(-tokens // BLOCK_TOKENS) * 8 * (qkv_rank or channels)
    return _checked(heads_part + kept + wide_kv, "attention block")


def mlp_block_scratch_bytes(tokens: int, channels: int, hidden: int, fc1_rank: int = 0, fc2_rank: int = 0,
                            block_tokens: int = BLOCKS_DEFAULT) -> int:  # fmt: skip
    """mcf_mlp_block_s8_get_buffer_size; ranks 0 mean full rank (no V factor).

    The same for every kernel variant. Short sequences: the chain [d, fc1_rank?, hidden, fc2_rank?, d], max
    consecutive sum; from BLOCK_MIN_TOKENS tokens on, the DSP kernel's widened input and int8 block rows
    (mcf_dsp_fused.h): 3 + 12 * max(d, hidden, ranks). Word aligned.
    """
    if tokens <= 0 or channels <= 0 or hidden <= 0 or fc1_rank < 0 or fc2_rank < 0 or block_tokens not in BLOCK_CHOICES:
        raise ValueError(
            f"invalid MLP block dims tokens={tokens} channels={channels} hidden={hidden} "
            f"fc1_rank={fc1_rank} fc2_rank={fc2_rank} block_tokens={block_tokens}"
        )
    if uses_blocks(tokens, block_tokens):
        return _checked(3 + BLOCK_ROW_BYTES * max(channels, hidden, fc1_rank, fc2_rank), "MLP block")
    chain = [channels, *([fc1_rank] if fc1_rank else []), hidden, *([fc2_rank] if fc2_rank else []), channels]
    return _checked(_chain_need(chain), "MLP block")
