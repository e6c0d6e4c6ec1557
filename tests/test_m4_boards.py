"""Small Cortex-M4 boards: the STM32L432KC (64 KB SRAM) and STM32L412KB (40 KB) as board files, their firmware, and
their emulated stand-ins on QEMU mps2-an386 with each part's SRAM and flash enforced by the linker and the MPU.

Needs arm-none-eabi-gcc and qemu-system-arm (both installed by `make setup`); nothing here is skipped.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest
import torch

from mcuformer.arch import ArchConfig
from mcuformer.boards import CpuFlags, load_board
from mcuformer.checkpoint import DatasetMeta, ModelFile, save_model
from mcuformer.codegen.compiler import CompiledModel, compile_model, plan_arch
from mcuformer.data import load_dataset, pixels_to_tensor
from mcuformer.device.build import Firmware, build_firmware
from mcuformer.device.errors import DeviceFault, FirmwareBudgetError
from mcuformer.device.kernel_harness import build_harness, run_harness
from mcuformer.device.qemu import qemu_session
from mcuformer.errors import BudgetError
from mcuformer.evaluate import evaluate_build
from mcuformer.model import VisionTransformer
from mcuformer.quant.ptq import calibrate

KB = 1024
PARTS = {"stm32l432kc": (64 * KB, 256 * KB), "stm32l412kb": (40 * KB, 128 * KB)}  # SRAM, flash
STAND_INS = {"qemu-l432kc": "stm32l432kc", "qemu-l412kb": "stm32l412kb"}
# 196 tokens of 64 channels: the plan needs about 43 KB of SRAM and 88 KB of flash, between the two parts' budgets.
BETWEEN = ArchConfig.uniform(image_size=28, channels=1, patch_size=2, embed_dim=64, depth=1, num_heads=2,
                             mlp_ratio=2, num_classes=10, name="between")  # fmt: skip


@pytest.mark.parametrize("name", [*PARTS, *STAND_INS])
def test_boards_load_with_the_parts_sizes(name):
    board = load_board(name)
    sram, flash = PARTS[STAND_INS.get(name, name)]  # a stand-in has its part's sizes
    assert (board.sram_bytes, board.ram_region.length, board.flash_bytes, board.flash_region.length) == (
        sram, sram, flash, flash)  # fmt: skip
    assert (board.core, board.kernels, board.ram_region.origin) == ("cortex-m4", "dsp", 0x2000_0000)
    assert board.cpu_flags == CpuFlags("cortex-m4", "fpv4-sp-d16", "hard")
    if board.is_emulated:
        assert board.qemu is not None and (board.qemu.machine, board.qemu.cpu) == ("mps2-an386", "cortex-m4")
        assert (board.bsp, board.counter, board.flash_region.origin) == ("qemu_mps2", "instructions", 0)
        return
    assert (board.bsp, board.counter, board.clock_hz) == ("stm32l4", "cycles", 80_000_000)
    assert board.flash_region.origin == 0x0800_0000
    assert board.uart is not None and (board.uart.instance, board.uart.tx, board.uart.rx) == ("USART2", "PA2", "PA15")
    assert (board.upload_protocol, board.platformio_platform) == ("stlink", "ststm32")
    assert board.platformio_board == "nucleo_" + name.removeprefix("stm32")


@pytest.fixture(scope="module")
def compiled(micro_run, tmp_path_factory) -> CompiledModel:
    """The micro model compiled for the smaller stand-in: it fits the other one too."""
    run, _ = micro_run
    return compile_model(run / "model.pt", "qemu-l412kb", tmp_path_factory.mktemp("m4") / "micro", name="micro")


@pytest.mark.parametrize("board", list(STAND_INS))
def test_micro_model_on_the_emulated_m4_is_exact_and_uses_the_planned_sram(compiled, board):
    result = evaluate_build(compiled.out_dir, board, limit=10)
    assert result.images == 10 and result.logits_exact == 1.0
    assert result.counter == "instructions" and result.mean_count > 10_000
    m = result.memory
    assert m is not None
    assert m.measured_arena == m.predicted_arena == compiled.plan.arena_bytes
    assert m.stack_high_water > 0 and m.measured_sram <= m.predicted_sram <= load_board(board).sram_bytes
    assert m.measured_flash <= m.predicted_flash


@pytest.fixture(scope="module")
def debug_firmware(compiled) -> Callable[[str], Firmware]:
    """The micro model's firmware with the PEEK/POKE debug commands, built once per stand-in."""
    return cache(lambda board: build_firmware(compiled.out_dir, board, debug_commands=True))


@pytest.mark.parametrize(
    ("board", "address", "write"),
    [
        ("qemu-l412kb", 0x2000_A000, False),  # first byte past the 40 KB budget
        ("qemu-l432kc", 0x2001_0000, False),  # first byte past the 64 KB budget
        ("qemu-l412kb", 0x0000_0100, True),  # write to flash
        ("qemu-l412kb", 0x0002_0000, False),  # first byte past the 128 KB of flash
    ],
    ids=["past-40KB-sram", "past-64KB-sram", "write-to-flash", "past-128KB-flash"],
)
def test_memory_outside_the_parts_budget_faults_under_the_mpu(debug_firmware, board, address, write):
    firmware = debug_firmware(board)
    last_word = load_board(board).ram_region.end - 4
    with qemu_session(firmware.elf, board) as session:
        link = session.link
        link.poke(last_word, 0x1234_5678)  # the last word of the budget is usable
        assert link.peek(last_word) == 0x1234_5678
        with pytest.raises(DeviceFault, match=rf"MemManage \(DACCVIOL, MMARVALID\) at address 0x{address:08x}") as info:
            link.poke(address, 1) if write else link.peek(address)
        assert session.wait() == 64 + 4  # the firmware exits with 64 + the exception number
    assert info.value.report.mmfar == address


def test_dsp_kernels_equal_the_portable_kernels_on_the_emulated_m4(tmp_path):
    harness = run_harness(build_harness(tmp_path, board="qemu-l412kb"), "qemu-l412kb")
    assert harness.mismatches == []
    assert set(harness.checked) == {"linear", "patch_embed", "patch_embed_rows", "attention_row", "row_ops",
                                    "mlp_block", "attention_block", "attention_block_heads",
                                    "attention_block_heads_once"}  # fmt: skip
    assert all(count > 0 for count in harness.checked.values())


def _symbols(elf: Path) -> dict[str, int]:
    out = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    return {p[2]: int(p[0], 16) for p in (line.split() for line in out.splitlines()) if len(p) == 3}


def _firmware_for_part(compiled: CompiledModel, part: str, out: Path) -> Firmware:
    firmware = build_firmware(compiled.out_dir, part, out_dir=out)
    sram, flash = PARTS[part]
    assert firmware.size.ram_budget == sram and firmware.size.flash_budget == flash
    assert firmware.size.sections[".arena"] == compiled.plan.arena_bytes
    return firmware


@pytest.mark.parametrize("part", list(PARTS))
def test_firmware_for_the_real_parts_compiles_and_links(compiled, part, tmp_path):
    firmware = _firmware_for_part(compiled, part, tmp_path)
    symbols = _symbols(firmware.elf)
    assert symbols["mcf_core_vectors"] == 0x0800_0000 and symbols["__stack_top__"] == 0x2000_0000 + PARTS[part][0]
    assert symbols["irq_vectors"] == 0x0800_0000 + 16 * 4  # the L4's interrupts follow the 16 core vectors
    assert firmware.size.flash_bytes <= compiled.report.flash_bytes


@pytest.fixture(scope="module")
def between_model(tmp_path_factory) -> Path:
    """BETWEEN with seeded random weights, calibrated on real images: fitting is a matter of sizes, not accuracy."""
    images = load_dataset("fashion-mnist", "test").images[:16]
    torch.manual_seed(0)
    model = VisionTransformer(BETWEEN, [0.286], [0.353]).eval()
    meta = DatasetMeta("fashion-mnist", (0.286,), (0.353,), tuple(str(i) for i in range(10)))
    path = tmp_path_factory.mktemp("between") / "model.pt"
    save_model(ModelFile(model, calibrate(model, pixels_to_tensor(images)), meta, {}), path)
    return path


def test_a_model_too_big_for_the_40kb_part_is_refused_with_the_overflow(between_model, tmp_path):
    plan = plan_arch(BETWEEN, "stm32l412kb")
    assert PARTS["stm32l412kb"][0] < plan.sram_bytes <= PARTS["stm32l432kc"][0]
    # The compiler refuses it for the 40 KB part from the plan...
    with pytest.raises(BudgetError, match=rf"needs {plan.sram_bytes:,} B SRAM .* but stm32l412kb has 40,960 B"):
        compile_model(between_model, "stm32l412kb", tmp_path / "refused")
    # ...and the linker from the image, when the C compiled for the 64 KB part is built for the 40 KB one.
    compiled = compile_model(between_model, "stm32l432kc", tmp_path / "between", name="between")
    needed = _firmware_for_part(compiled, "stm32l432kc", tmp_path / "l432kc").size.ram_bytes  # fits in 64 KB
    with pytest.raises(
        FirmwareBudgetError, match=r"firmware for stm32l412kb does not fit: region RAM overflowed"
    ) as info:
        build_firmware(compiled.out_dir, "stm32l412kb", out_dir=tmp_path / "l412kb")
    over = needed - PARTS["stm32l412kb"][0]  # ld may add up to 7 B to align the stack
    assert info.value.region == "RAM" and over <= info.value.overflow_bytes <= over + 7
    assert "\n" not in str(info.value)
