"""The DSP (ARMv7E-M) kernels equal the portable kernels bit for bit on the emulated Cortex-M7, and are faster.

One bare-metal ELF (mcuformer.device.kernel_harness) holds both libraries; on QEMU it compares them on random
cases with edge values drawn often (one token, odd widths, ranks and head sizes, zero points -128/127, multipliers
0 and 2^31 - 1, shifts -32 and 30, biases near the int32 limits) including guard bytes behind every output, and
counts instructions of both on benchmark shapes. Needs arm-none-eabi-gcc and qemu-system-arm (make setup).
"""

from __future__ import annotations

import dataclasses
import subprocess

import pytest

from mcuformer.boards import Board, load_board, validate_board
from mcuformer.codegen.host_build import KERNEL_INCLUDE, compile_host, kernel_sources
from mcuformer.device.kernel_harness import HarnessResult, build_harness, run_harness
from mcuformer.errors import McuformerError
from mcuformer.firmware import KERNELS_DIR


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> HarnessResult:
    return run_harness(build_harness(tmp_path_factory.mktemp("harness")))


def test_every_dsp_kernel_equals_the_portable_kernel_on_qemu(harness):
    assert harness.mismatches == []
    assert harness.checked == {"linear": 400, "patch_embed": 150, "attention_row": 250, "row_ops": 300,
                               "mlp_block": 120, "attention_block": 120,
                               "attention_block_heads": 120, "attention_block_heads_once": 120}  # fmt: skip


def test_the_linear_without_its_pair_cores_equals_the_portable_kernel_on_qemu(tmp_path):
    """MCF_DSP_LINEAR_PAIRS=0 (what a build whose linears all take one token sets): every token, and every row
    wider than the stack row, through the one-token path; the harness's linear cases (up to 6 tokens, rows up to
    336 inputs) and the fused kernels' per-token linears give the portable results."""
    lean = run_harness(build_harness(tmp_path, extra_flags=("-DMCF_DSP_LINEAR_PAIRS=0",)))
    assert lean.mismatches == []
    assert lean.checked["linear"] == 400


MAC_OPS = (
    "linear",
    "patch_embed",
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
    assert support == {"mcf_dsp_block.c", "mcf_dsp_fused.c", "mcf_dsp_heads.c"}
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
