"""The DSP (ARMv7E-M) kernels equal the portable kernels bit for bit on the emulated Cortex-M7, and are faster.

One bare-metal ELF (mcuformer.device.kernel_harness) holds both libraries; on QEMU it compares them on random
cases with edge values drawn often (one token, odd widths, ranks and head sizes, zero points -128/127, multipliers
0 and 2^31 - 1, shifts -32 and 30, biases near the int32 limits) including guard bytes behind every output, and
counts instructions of both on benchmark shapes. Needs arm-none-eabi-gcc and qemu-system-arm (make setup).
"""

from __future__ import annotations

import ctypes
import dataclasses
import subprocess

import numpy as np
import pytest
from kernel_ctypes import ChannelQuant, LinearParams, PatchEmbedDims, ptr

from mcuformer.boards import Board, load_board, validate_board
from mcuformer.codegen.host_build import KERNEL_INCLUDE, compile_host, kernel_sources
from mcuformer.codegen.scratch import PATCH_BLOCK_INPUTS, patch_embed_rows_scratch_bytes
from mcuformer.device.kernel_harness import HarnessResult, build_harness, run_harness
from mcuformer.errors import McuformerError
from mcuformer.firmware import KERNELS_DIR
from mcuformer.quant import ops


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> HarnessResult:
    return run_harness(build_harness(tmp_path_factory.mktemp("harness")))


def test_every_dsp_kernel_equals_the_portable_kernel_on_qemu(harness):
    assert harness.mismatches == []
    assert harness.checked == {"linear": 400, "patch_embed": 150, "patch_embed_rows": 150, "attention_row": 250,
                               "row_ops": 300, "mlp_block": 120, "attention_block": 120,
                               "attention_block_heads": 120, "attention_block_heads_once": 120}  # fmt: skip


def test_lean_switches_keep_every_kernel_equal_to_the_portable_kernel_on_qemu(tmp_path):
    """MCF_DSP_LINEAR_PAIRS=0 (what a build whose linears all take one token sets): every token, and every row
    wider than the stack row, through the one-token path; the harness's linear cases (up to 6 tokens, rows up to
    336 inputs) and the fused kernels' per-token linears give the portable results. With MCF_DSP_SPEED_LOOPS=0 too
    (a build without widened weights): the token blocks' dot loops of 8 groups a pass, entered at every offset by
    the fused cases' widths, and last blocks of one to three tokens on the four-token loops give them as well."""
    flags = ("-DMCF_DSP_LINEAR_PAIRS=0", "-DMCF_DSP_SPEED_LOOPS=0")
    lean = run_harness(build_harness(tmp_path, extra_flags=flags))
    assert lean.mismatches == []
    assert lean.checked["linear"] == 400 and lean.checked["attention_block_heads_once"] == 120


def test_without_the_pair_kernel_the_patch_row_kernel_runs_only_small_patches(tmp_path):
    """MCF_DSP_PATCH_PAIRS=0 (what the build of a model whose patches are small sets): the patch-row kernel in
    token blocks (blocks = 1) gives the reference results for patches of up to PATCH_BLOCK_INPUTS values (codegen's
    mirror of the kernel's limit), at every grid width and out_ch, in the scratch codegen sizes; one value more, and
    the pair kernel itself, return MCF_ERR_ARG instead of leaving outputs unwritten; so do rows of fewer than
    four patches, which fill no block."""
    lib = ctypes.CDLL(str(compile_host(kernel_sources("dsp"), tmp_path / "lean.so", include_dirs=[KERNEL_INCLUDE],
                                       shared=True, extra_flags=("-DMCF_DSP_PATCH_PAIRS=0",))))  # fmt: skip
    for kernel, count in ((lib.mcf_patch_embed_rows_s8, 8), (lib.mcf_patch_embed_s8, 7)):
        kernel.restype = ctypes.c_int32
        kernel.argtypes = [ctypes.c_void_p] * count
    rng = np.random.default_rng(0)
    in_zp, out_zp = 3, -5
    largest = PATCH_BLOCK_INPUTS  # as 1 x 1 patches of that many channels
    cases = [(2, 3, 3, 4, 7, 0), (4, 1, 1, 5, 8, 0), (8, 1, 2, 4, 5, 0), (4, 4, 2, 6, 6, 0), (7, 1, 2, 5, 3, 0),
             (1, largest, 1, 4, 4, 0), (1, largest + 1, 1, 4, 4, -1), (4, 1, 2, 3, 4, -1)]  # fmt: skip
    for patch, channels, grid_h, grid_w, out_ch, status in cases:
        image = rng.integers(-128, 128, (patch * grid_h, patch * grid_w, channels), dtype=np.int8)
        weight = rng.integers(-128, 128, (out_ch, patch * patch * channels), dtype=np.int8)
        bias = rng.integers(-1000, 1000, out_ch, dtype=np.int32)
        mult, shift = np.full(out_ch, 1 << 30, np.int32), np.full(out_ch, -8, np.int8)
        out = np.zeros((grid_h * grid_w, out_ch), np.int8)
        height, width = patch * grid_h, patch * grid_w
        scratch = np.zeros(patch_embed_rows_scratch_bytes(height, width, channels, patch, out_ch, 1), np.int8)
        args = (ctypes.byref(PatchEmbedDims(height, width, channels, patch, out_ch, 1)),
                ctypes.byref(LinearParams(in_zp, out_zp)), ctypes.byref(ChannelQuant(ptr(mult), ptr(shift))),
                ptr(image), ptr(weight), ptr(bias), ptr(out))  # fmt: skip
        assert lib.mcf_patch_embed_rows_s8(*args, ptr(scratch)) == status, (patch, channels)
        assert lib.mcf_patch_embed_s8(*args) == -1
        if status == 0:
            want = ops.patch_embed(image, patch, weight, bias, mult, shift, in_zp, out_zp)
            assert np.array_equal(out, want.reshape(out.shape))


MAC_OPS = (
    "linear",
    "patch_embed",
    "patch_embed_rows",
    "attention_row",
    "mlp_block",
    "attention_block",
    "attention_block_heads",
    "attention_block_heads_once",
)


def test_dsp_kernels_run_fewer_instructions_per_mac(harness):
    rows = {(r.op, r.shape): r for r in harness.bench}
    assert {op for op, _ in rows} == {*MAC_OPS, "layernorm", "add", "lut", "softmax"}
    for row in harness.bench:
        if row.op in MAC_OPS:
            assert row.variant_instructions < row.portable_instructions / 2, row
        else:  # element-wise: per element, less too
            assert row.variant_instructions < row.portable_instructions, row
    # Linear layers: each weight word serves two tokens, each input word two channels (portable: ~10).
    assert rows[("linear", "50x48x48")].variant_per_mac < 3.0
    # The patch-row kernel: patches four at a time through the channel loop, 49 inputs with its leftover steps
    # (1.23 measured; 4.4 as pairs of patches and channels), 16 inputs (1.78; 5.8 as pairs).
    assert rows[("patch_embed_rows", "28x1x7")].variant_per_mac < 1.4
    assert rows[("patch_embed_rows", "28x1x4")].variant_per_mac < 2.0
    # The fused MLP block, 4 tokens per weight load and the assembly channel loop (1.18 measured; 1.41 with the
    # channel loop in C): LayerNorm, GELU and the residual add included.
    assert rows[("mlp_block", "50x48x192")].variant_per_mac < 1.3
    # The per-head attention block: scores and context through the shared-requantization channel loop (1.70).
    assert rows[("attention_block_heads", "50x48x3")].variant_per_mac < 2.0
    # Normalising once per token instead of once per head and token: fewer instructions for the same results.
    once = rows[("attention_block_heads_once", "50x48x3")]
    assert once.variant_instructions < rows[("attention_block_heads", "50x48x3")].variant_instructions


def test_the_dsp_variant_overrides_portable_files_by_name():
    portable = {p.name: p for p in kernel_sources("portable")}
    dsp = {p.name: p for p in kernel_sources("dsp")}
    support = {name for name in dsp if name.startswith("mcf_dsp_")}  # the helpers its kernels share
    assert support == {"mcf_dsp_block.c", "mcf_dsp_fused.c", "mcf_dsp_heads.c", "mcf_dsp_layernorm.c"}
    assert set(dsp) - support == set(portable)  # complete: the variant falls back to portable for the rest
    overridden = {name for name, path in dsp.items() if path.parent.name == "dsp"} - support
    assert {"mcf_linear_s8.c", "mcf_patch_embed_s8.c", "mcf_attention_row_s8.c"} <= overridden
    assert overridden | support == {p.name for p in (KERNELS_DIR / "dsp").glob("*.c")}
    with pytest.raises(McuformerError, match="no kernel sources for variant 'neon'"):
        kernel_sources("neon")


def test_the_dsp_variant_builds_on_the_host_with_the_instructions_emulated(tmp_path):
    # Without __ARM_FEATURE_DSP, mcf_dsp.h falls back to C with the instructions' semantics.
    lib = compile_host(kernel_sources("dsp"), tmp_path / "libdsp.so", include_dirs=[KERNEL_INCLUDE], shared=True)
    assert lib.is_file()


@pytest.mark.parametrize("level", ["-O0", "-Os"])
def test_the_dsp_kernels_build_for_the_core_at_any_optimisation_level(tmp_path, level):
    # The inline assembly pins 13 registers, which an -O0 build cannot give: MCF_DSP_ASM sends it to the C loops.
    flags = [*load_board("qemu-m7").cpu_flags.gcc_flags(), level, "-std=c11", "-Wall", "-Wextra", "-Werror"]
    for source in (KERNELS_DIR / "dsp").glob("*.c"):
        subprocess.run(["arm-none-eabi-gcc", *flags, f"-I{KERNEL_INCLUDE}", "-c", str(source),
                        "-o", str(tmp_path / f"{source.stem}.o")], check=True)  # fmt: skip


def test_boards_pick_their_kernel_variant():
    for name in ("qemu-m7", "stm32f746", "stm32f427", "stm32h743"):
        assert load_board(name).kernels == "dsp"
    m0 = Board("m0", "a Cortex-M0 board", "cortex-m0", 48_000_000, 32_768, 262_144)
    assert m0.kernels == "portable" and validate_board(m0) == []
    assert Board("m4", "a Cortex-M4 board", "cortex-m4", 80_000_000, 65_536, 262_144).kernels == "dsp"
    wrong = dataclasses.replace(m0, kernel_variant="dsp")
    assert any("needs a core with the DSP extension" in p for p in validate_board(wrong))
    assert any("kernels must be one of" in p for p in validate_board(dataclasses.replace(m0, kernel_variant="x")))
