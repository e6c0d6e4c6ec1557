"""Flash taken by code, estimated without building: the kernels a graph uses plus a cost per kernel call.

The kernel symbols an op kind links are in the op table (ops.py). KERNEL_TEXT_BYTES are upper bounds of each
kernel's .text, static helpers included, in either variant (portable, dsp) for a Cortex-M7 (gcc 12, -O2 -mthumb),
and of each variant support file (helpers its kernels share, counted once however many kernels call them);
tests/test_code_size.py rebuilds the kernels and fails if any bound is exceeded.
"""

from __future__ import annotations

from mcuformer.codegen.ir import Graph
from mcuformer.codegen.ops import OPS

VARIANTS = ("portable", "dsp")  # firmware/kernels/<variant>; support files are named mcf_<variant>_*.c
KERNEL_TEXT_BYTES: dict[str, int] = {  # largest variant (portable, dsp) + ~25% (Cortex-M7, -O2), rounded up to 16
    "mcf_patch_embed_s8": 4432,  # dsp: 2 patches x 2 channels, unrolled tails
    "mcf_linear_s8": 4896,  # dsp: 2x2, 1x2, 1x1 cores and the one-token widened path
    "mcf_add_s8": 768,  # dsp: the lane loop twice (output zero point folded or not)
    "mcf_linear_w16_s8": 656,  # portable only: the one-token path of widened layers
    "mcf_lut_s8": 208,
    "mcf_layernorm_s8": 1584,
    "mcf_attention_s8": 1024,
    "mcf_attention_s8_get_buffer_size": 80,
    "mcf_softmax_s8": 576,
    "mcf_mean_pool_s8": 336,
    "mcf_copy_s8": 64,
    "mcf_patch_embed_rows_s8": 256,
    "mcf_patch_embed_rows_s8_get_buffer_size": 96,
    "mcf_attention_row_s8": 2672,
    "mcf_attention_block_s8": 2128,  # with its static helpers (dsp: the block loop and the one-token path)
    "mcf_attention_block_s8_get_buffer_size": 272,
    "mcf_attention_block_heads_s8": 1936,  # the one-token path inlined (dsp: the blocks in mcf_dsp_heads)
    "mcf_attention_block_heads_s8_get_buffer_size": 304,
    "mcf_attention_block_heads_once_s8": 1936,  # the same
    "mcf_attention_block_heads_once_s8_get_buffer_size": 96,  # adds to the per-head kernel's size
    "mcf_dsp_heads": 3360,  # dsp support file: the per-head kernels' 4-query blocks and softmax rows
    "mcf_mlp_block_s8": 1488,  # with its static helpers (dsp: the block loop and the one-token path)
    "mcf_dsp_block": 3824,  # dsp support file: widening, 4-token dot loops, assembly channel loops, 4-token linear
    "mcf_dsp_fused": 1552,  # dsp support file: the fused kernels' argument checks and per-block layer chains
    "mcf_mlp_block_s8_get_buffer_size": 256,
}
CALL_BYTES = 40  # one call in mcf_model_run: argument set-up, branch, status check
STRUCT_BYTES = 40  # the op's const dims/params structs
MODEL_RUN_BYTES = 128  # prologue, input/output copies of mcf_model_run
RUNTIME_BYTES = 4096  # firmware runtime: startup, serial protocol and CRCs, UART/timer/MPU support, fault report
LIBC_BYTES = 1024  # memcpy/memmove (newlib-nano) and libgcc 64-bit division (LayerNorm)


def text_bytes(symbol: str, variant: str) -> int:
    """The bound of one kernel symbol or support unit in a kernel variant (0: another variant's support file)."""
    parts = symbol.split("_")
    if len(parts) > 2 and parts[1] in VARIANTS and parts[1] != variant:
        return 0
    return KERNEL_TEXT_BYTES[symbol]


def code_bytes_estimate(graph: Graph, variant: str = "dsp") -> int:
    """Code of the graph's kernels in the board's kernel variant, calls and the runtime."""
    symbols = {s for op in graph.ops for s in OPS[op.kind].symbols}
    kernels = sum(text_bytes(s, variant) for s in symbols)
    calls = len(graph.ops) * (CALL_BYTES + STRUCT_BYTES)
    return kernels + calls + MODEL_RUN_BYTES + RUNTIME_BYTES + LIBC_BYTES
