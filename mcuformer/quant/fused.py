"""Sizes of the fused per-token block kernels (firmware/kernels/include/mcf_fused.h), for the memory planner.

mcf_attention_block_s8 and mcf_mlp_block_s8 run a block's two halves token by token, in place on the residual
stream x [tokens][d]. Besides x, the attention half needs K and V ([tokens][d] each, placed by the planner) and
each half a per-token scratch. The functions here mirror the C `_get_buffer_size` functions exactly (tests
compare them over many random dims).

Scratch layout (both kernels): the per-token buffers form a chain, each written by an op from the previous one
(so an op's input and output must not overlap); even-indexed buffers start the scratch and odd-indexed ones end
it, so the scratch needs max(c[i] + c[i + 1]) bytes over consecutive chain buffers; the attention half also
keeps one score row (`tokens` bytes) beside the q/context row. Sizes are rounded up to a multiple of 4.
The C functions use the equivalent closed forms (a rank of 0 counting as d in the first):
    attention: d + max(qkv_rank, proj_rank, tokens)
    MLP:       max(fc1_rank + max(d, hidden) or d + hidden, fc2_rank + max(d, hidden) or d + hidden)
"""

from __future__ import annotations

from dataclasses import dataclass

from mcuformer.quant.qmodel import QBlock, QFactored

INT32_MAX = 2**31 - 1


def _align4(n: int) -> int:
    return (n + 3) // 4 * 4


# mcf_fused.h: sequences of at least BLOCK_MIN_TOKENS tokens get a scratch for the DSP kernels' 4-token blocks,
# BLOCK_ROW_BYTES per value of the widest row (4 tokens x (int16 + int8)); shorter ones the one-token chain.
BLOCK_MIN_TOKENS = 16
BLOCK_TOKENS = 4  # MCF_FUSED_BLOCK_TOKENS
BLOCK_ROW_BYTES = 12


def _chain_need(chain: list[int]) -> int:
    return max(a + b for a, b in zip(chain, chain[1:], strict=False))


def _checked(size: int, what: str) -> int:
    if size > INT32_MAX - 3:
        raise ValueError(f"{what} scratch of {size} bytes does not fit int32")
    return _align4(size)


def attention_block_scratch_bytes(tokens: int, channels: int, heads: int, qkv_rank: int = 0, proj_rank: int = 0) -> int:
    """mcf_attention_block_s8_get_buffer_size; ranks 0 mean full rank (no V factor).

    The same for every kernel variant. Short sequences: the chain [d, qkv_rank?, d, proj_rank?, d], max(max
    consecutive sum, d + tokens); from BLOCK_MIN_TOKENS tokens on, the DSP kernel's widened input, int8 block rows
    and score row (firmware/kernels/include/mcf_fused_dsp.h): 3 + 12 * max(d, ranks) + tokens. Word aligned.
    """
    if tokens <= 0 or channels <= 0 or heads <= 0 or channels % heads or qkv_rank < 0 or proj_rank < 0:
        raise ValueError(
            f"invalid attention block dims tokens={tokens} channels={channels} heads={heads} "
            f"qkv_rank={qkv_rank} proj_rank={proj_rank}"
        )
    if tokens >= BLOCK_MIN_TOKENS:
        return _checked(3 + BLOCK_ROW_BYTES * max(channels, qkv_rank, proj_rank) + tokens, "attention block")
    chain = [channels, *([qkv_rank] if qkv_rank else []), channels, *([proj_rank] if proj_rank else []), channels]
    return _checked(max(_chain_need(chain), channels + tokens), "attention block")


def mlp_block_scratch_bytes(tokens: int, channels: int, hidden: int, fc1_rank: int = 0, fc2_rank: int = 0) -> int:
    """mcf_mlp_block_s8_get_buffer_size; ranks 0 mean full rank (no V factor).

    The same for every kernel variant. Short sequences: the chain [d, fc1_rank?, hidden, fc2_rank?, d], max
    consecutive sum; from BLOCK_MIN_TOKENS tokens on, the DSP kernel's widened input and int8 block rows
    (mcf_fused_dsp.h): 3 + 12 * max(d, hidden, ranks). Word aligned.
    """
    if tokens <= 0 or channels <= 0 or hidden <= 0 or fc1_rank < 0 or fc2_rank < 0:
        raise ValueError(
            f"invalid MLP block dims tokens={tokens} channels={channels} hidden={hidden} "
            f"fc1_rank={fc1_rank} fc2_rank={fc2_rank}"
        )
    if tokens >= BLOCK_MIN_TOKENS:
        return _checked(3 + BLOCK_ROW_BYTES * max(channels, hidden, fc1_rank, fc2_rank), "MLP block")
    chain = [channels, *([fc1_rank] if fc1_rank else []), hidden, *([fc2_rank] if fc2_rank else []), channels]
    return _checked(_chain_need(chain), "MLP block")


def _rank(layer: QFactored) -> int:
    return 0 if layer.v is None else int(layer.v.weight.shape[0])


@dataclass(frozen=True)
class AttentionBlockDims:
    """mcf_attention_block_dims (field order as in C)."""

    tokens: int
    channels: int
    heads: int
    qkv_rank: int = 0
    proj_rank: int = 0

    @classmethod
    def from_block(cls, block: QBlock, tokens: int) -> AttentionBlockDims:
        qkv_rank = 0 if block.qkv_v is None else int(block.qkv_v.weight.shape[0])
        return cls(tokens, int(block.q.weight.shape[0]), block.attn.heads, qkv_rank, _rank(block.proj))

    def scratch_bytes(self) -> int:
        return attention_block_scratch_bytes(self.tokens, self.channels, self.heads, self.qkv_rank, self.proj_rank)

    def kv_bytes(self) -> int:
        """Bytes of each of the K and V buffers ([tokens][channels] int8)."""
        return self.tokens * self.channels


@dataclass(frozen=True)
class MlpBlockDims:
    """mcf_mlp_block_dims (field order as in C)."""

    tokens: int
    channels: int
    hidden: int
    fc1_rank: int = 0
    fc2_rank: int = 0

    @classmethod
    def from_block(cls, block: QBlock, tokens: int) -> MlpBlockDims:
        fc1 = block.fc1.u.weight.shape
        return cls(tokens, int(block.fc2.u.weight.shape[0]), int(fc1[0]), _rank(block.fc1), _rank(block.fc2))

    def scratch_bytes(self) -> int:
        return mlp_block_scratch_bytes(self.tokens, self.channels, self.hidden, self.fc1_rank, self.fc2_rank)
