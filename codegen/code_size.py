"""Flash taken by code, estimated without building: the kernels a graph uses plus a cost per kernel call.

The kernel symbols an op kind links are in the op table (ops.py). KERNEL_TEXT_BYTES are upper bounds of each
kernel's .text, static helpers included, in either variant (portable, dsp) for a Cortex-M7 (gcc 12, -O2 -mthumb),
and of each variant support file (helpers its kernels share, counted once however many kernels call them);
tests/test_code_size.py rebuilds the kernels and fails if any bound is exceeded.
"""

from __future__ import annotations

from mcuformer.codegen.ir import Graph
from mcuformer.codegen.ops import OPS, op_dims
from mcuformer.codegen.scratch import patch_row_blocks, patch_values, uses_blocks

VARIANTS = ("portable", "dsp")  # firmware/kernels/<variant>; support files are named mcf_<variant>_*.c
# Largest variant (portable, dsp) + ~25% (Cortex-M7, -O2), rounded up to 16; per variant where they differ a lot.
KERNEL_TEXT_BYTES: dict[str, int | dict[str, int]] = {
    "mcf_patch_embed_s8": 4432,  # dsp: 2 patches x 2 channels, unrolled tails
    "mcf_linear_s8": 4896,  # dsp: 2x2, 1x2, 1x1 cores and the one-token widened path
    "mcf_add_s8": 768,  # dsp: the lane loop twice (output zero point folded or not)
    "mcf_linear_w16_s8": 656,  # portable only: the one-token path of widened layers
    "mcf_lut_s8": 208,
    "mcf_layernorm_s8": {"portable": 1056, "dsp": 192},  # dsp: the checks, the rows in mcf_dsp_layernorm
    "mcf_attention_s8": 1024,
    "mcf_attention_s8_get_buffer_size": 80,
    "mcf_softmax_s8": 576,
    "mcf_mean_pool_s8": 336,
    "mcf_copy_s8": 64,
    "mcf_patch_embed_rows_s8": 1296,  # dsp: patches in token blocks (x16 in the scratch)
    "mcf_patch_embed_rows_s8_get_buffer_size": 160,
    "mcf_attention_row_s8": 2672,
    "mcf_attention_block_s8": 2128,  # with its static helpers (dsp: the block loop and the one-token path)
    "mcf_attention_block_s8_get_buffer_size": 272,
    "mcf_attention_block_heads_s8": 1936,  # the one-token path inlined (dsp: the blocks in mcf_dsp_heads)
    "mcf_attention_block_heads_s8_get_buffer_size": 304,
    "mcf_attention_block_heads_once_s8": 1936,  # the same
    "mcf_attention_block_heads_once_s8_get_buffer_size": 256,  # adds to the per-head kernel's size
    "mcf_dsp_heads": 3360,  # dsp support file: the per-head kernels' 4-query blocks and softmax rows
    "mcf_mlp_block_s8": 1664,  # with its static helpers (dsp: the block loop and the one-token path)
    "mcf_dsp_block": 12432,  # dsp support file: widening, 4-token dot loops, assembly channel loops, 4-token linear
    "mcf_dsp_fused": 1552,  # dsp support file: the fused kernels' argument checks and per-block layer chains
    "mcf_dsp_layernorm": 1616,  # dsp support file: the LayerNorm's plan and rows (its kernel and the fused ones)
    "mcf_mlp_block_s8_get_buffer_size": 256,
}
# Paths of the DSP kernels a generated build compiles out when its graph never takes them (kernel_defines; each
# define is 1 by default, the complete library): the bounds of the kernels that shrink, keyed by the switches
# that must all be off (the smallest bound that applies counts), and per op kind the symbols only the dropped
# path calls (tests/test_code_size.py checks both against the compiler).
DSP_SWITCHES = (
    "MCF_DSP_FUSED_ONE_TOKEN",  # the fused kernels' one-token chain, under BLOCK_MIN_TOKENS tokens (mcf_dsp_fused.h)
    "MCF_DSP_LINEAR_PAIRS",  # the linear's pair cores: every token through the one-token path (dsp/mcf_linear_s8.c)
    "MCF_DSP_PATCH_PAIRS",  # the pair kernel mcf_patch_embed_s8 (dsp/mcf_patch_embed_s8.c)
    "MCF_DSP_WIDENED",  # the token blocks' widened-weight paths (dsp/mcf_dsp_block.c)
    "MCF_DSP_CHANNEL_TAIL",  # the token blocks' channel loop for an in_ch that is not a multiple of four (the same)
    "MCF_DSP_WIDE_KV",  # the once kernel's widened K and V and their shared loop (the same, dsp/mcf_dsp_heads.c)
    "MCF_DSP_SPEED_LOOPS",  # the token blocks' 16-group dot-loop passes and two-token loops (the same)
)
WIDENED_SWITCHES = ("MCF_DSP_WIDENED", "MCF_DSP_SPEED_LOOPS")  # on exactly when a layer is widened
LEAN_TEXT_BYTES: dict[tuple[str, ...], dict[str, int]] = {
    ("MCF_DSP_FUSED_ONE_TOKEN",): {
        "mcf_attention_block_s8": 704,
        "mcf_attention_block_heads_s8": 208,
        "mcf_attention_block_heads_once_s8": 208,
        "mcf_mlp_block_s8": 848,
    },
    ("MCF_DSP_LINEAR_PAIRS",): {"mcf_linear_s8": 1776},
    ("MCF_DSP_PATCH_PAIRS",): {"mcf_patch_embed_s8": 16},
    # mcf_dsp_block: the widened weights' paths take 1-1.6 KB, the leftover loop 1.1-1.6 KB, the widened K and V
    # 1.4-2.6 KB, the speed loops (16-group passes, two-token blocks) 1.6-3.3 KB of what is left (codegen turns
    # them off with the widened paths).
    ("MCF_DSP_WIDENED",): {"mcf_dsp_block": 10560},
    ("MCF_DSP_CHANNEL_TAIL",): {"mcf_dsp_block": 11040},
    ("MCF_DSP_CHANNEL_TAIL", "MCF_DSP_WIDENED"): {"mcf_dsp_block": 9216},
    ("MCF_DSP_WIDE_KV",): {"mcf_dsp_block": 9440},
    ("MCF_DSP_WIDE_KV", "MCF_DSP_WIDENED"): {"mcf_dsp_block": 7296},
    ("MCF_DSP_WIDE_KV", "MCF_DSP_CHANNEL_TAIL"): {"mcf_dsp_block": 8064},
    ("MCF_DSP_CHANNEL_TAIL", "MCF_DSP_WIDENED", "MCF_DSP_WIDE_KV"): {"mcf_dsp_block": 5952},
    ("MCF_DSP_SPEED_LOOPS", "MCF_DSP_WIDENED"): {"mcf_dsp_block": 6816},
    ("MCF_DSP_SPEED_LOOPS", "MCF_DSP_WIDENED", "MCF_DSP_CHANNEL_TAIL"): {"mcf_dsp_block": 5952},
    ("MCF_DSP_SPEED_LOOPS", "MCF_DSP_WIDENED", "MCF_DSP_WIDE_KV"): {"mcf_dsp_block": 4912},
    ("MCF_DSP_SPEED_LOOPS", "MCF_DSP_WIDENED", "MCF_DSP_WIDE_KV", "MCF_DSP_CHANNEL_TAIL"): {"mcf_dsp_block": 4064},
}
# The input widths of a fused op's linears (dims fields; 0: an absent factor).
FUSED_IN_CHANNELS = ("channels", "hidden", "qkv_rank", "proj_rank", "fc1_rank", "fc2_rank")
ONE_TOKEN_ONLY_LINKS: dict[str, tuple[str, ...]] = {  # op kind -> what only its one-token path calls
    "attention_block": ("mcf_linear_s8", "mcf_linear_w16_s8"),
    "attention_block_heads": ("mcf_attention_row_s8", "mcf_linear_s8", "mcf_linear_w16_s8"),
    "attention_block_heads_once": ("mcf_attention_row_s8", "mcf_linear_s8", "mcf_linear_w16_s8"),
    "mlp_block": ("mcf_linear_s8", "mcf_linear_w16_s8"),
}
CALL_BYTES = 40  # one call in mcf_model_run: argument set-up, branch, status check
STRUCT_BYTES = 40  # the op's const dims/params structs
MODEL_RUN_BYTES = 128  # prologue, input/output copies of mcf_model_run
RUNTIME_BYTES = 4096  # firmware runtime: startup, serial protocol and CRCs, UART/timer/MPU support, fault report
LIBC_BYTES = 1024  # memcpy/memmove/memset (newlib-nano); the portable LayerNorm's libgcc 64-bit division


def kernel_defines(graph: Graph) -> dict[str, int]:
    """The DSP_SWITCHES the graph lets its build turn off (0): the fused one-token chain when every fused op runs token
    blocks (scratch.uses_blocks), the linear's pair cores when every linear op has one token, the pair patch
    embedding when the only patch embeddings are patch-row ones in token blocks (scratch.patch_row_blocks), the
    widened-weight paths and the speed loops when no layer is widened, the token blocks' channel loop for
    leftover inputs when every input width they run is a multiple of four, the widened K and V when no op is a once
    kernel. Recorded in the build's manifest; the firmware builders pass them to the compiler as -D flags."""
    blocks = [op_dims(graph, op) for op in graph.ops if OPS[op.kind].in_place_block]
    linears = [op_dims(graph, op)["tokens"] for op in graph.ops if op.kind == "linear"]
    patches = [op_dims(graph, op) for op in graph.ops if OPS[op.kind].kernel == "mcf_patch_embed_s8"]
    patch_rows = [op_dims(graph, op) for op in graph.ops if op.kind == "patch_embed_rows"]
    defines = {}
    if all(uses_blocks(d["tokens"], d["block_tokens"]) for d in blocks):
        defines["MCF_DSP_FUSED_ONE_TOKEN"] = 0
    if all(tokens <= 1 for tokens in linears):
        defines["MCF_DSP_LINEAR_PAIRS"] = 0
    small_rows = [d for d in patch_rows if patch_row_blocks(d)]
    if not patches and len(small_rows) == len(patch_rows):
        defines["MCF_DSP_PATCH_PAIRS"] = 0
    if not graph.meta.get("widened"):  # no widened weights: no flash bought for speed, no speed loops either
        defines.update(dict.fromkeys(WIDENED_SWITCHES, 0))
    in_channels = [d.get(name, 0) for d in blocks for name in FUSED_IN_CHANNELS]
    in_channels += [patch_values(d) for d in small_rows]
    if all(width % 4 == 0 for width in in_channels):
        defines["MCF_DSP_CHANNEL_TAIL"] = 0
    if not any(op.kind == "attention_block_heads_once" for op in graph.ops):
        defines["MCF_DSP_WIDE_KV"] = 0
    return defines


def text_bytes(symbol: str, variant: str, defines: dict[str, int] | None = None) -> int:
    """The bound of one kernel symbol or support unit in a kernel variant (0: another variant's support file),
    built with `defines` (kernel_defines; only the dsp variant has switches)."""
    parts = symbol.split("_")
    if len(parts) > 2 and parts[1] in VARIANTS and parts[1] != variant:
        return 0
    bounds = KERNEL_TEXT_BYTES[symbol]
    bound = bounds[variant] if isinstance(bounds, dict) else bounds
    if variant == "dsp":
        off = {name for name, value in (defines or {}).items() if value == 0}
        for switches, bounds in LEAN_TEXT_BYTES.items():
            if off.issuperset(switches) and symbol in bounds:
                bound = min(bound, bounds[symbol])
    return bound


def kind_symbols(kind: str, variant: str, defines: dict[str, int] | None = None) -> tuple[str, ...]:
    """The kernel symbols and support units an op kind links in a variant built with `defines`."""
    symbols = OPS[kind].symbols
    if variant == "dsp" and (defines or {}).get("MCF_DSP_FUSED_ONE_TOKEN", 1) == 0:
        dropped = ONE_TOKEN_ONLY_LINKS.get(kind, ())
        symbols = tuple(s for s in symbols if s not in dropped)
    return symbols


def code_bytes_estimate(graph: Graph, variant: str = "dsp") -> int:
    """Code of the graph's kernels in the board's kernel variant (with the graph's kernel_defines), calls and
    the runtime."""
    defines = kernel_defines(graph)
    symbols = {s for op in graph.ops for s in kind_symbols(op.kind, variant, defines)}
    kernels = sum(text_bytes(s, variant, defines) for s in symbols)
    calls = len(graph.ops) * (CALL_BYTES + STRUCT_BYTES)
    return kernels + calls + MODEL_RUN_BYTES + RUNTIME_BYTES + LIBC_BYTES


def widened_code_bytes(variant: str, defines: dict[str, int]) -> int:
    """The code widened weights add to the estimate of a build with kernel_defines `defines` and no widened layer:
    the token blocks' widened-weight paths and speed loops, which that build compiles out (WIDENED_SWITCHES)."""
    if variant != "dsp":
        return 0
    widened = {name: value for name, value in defines.items() if name not in WIDENED_SWITCHES}
    return text_bytes("mcf_dsp_block", variant, widened) - text_bytes("mcf_dsp_block", variant, defines)
