"""Board descriptors: every board loads with consistent facts, and its linker script links a program."""

import subprocess
from pathlib import Path

import pytest

from mcuformer.boards import Board, BoardError, CpuFlags, MemoryRegion, board_names, load_board, validate_board
from mcuformer.codegen.report import STACK_RESERVE_BYTES
from mcuformer.device.linker import render_linker_script, write_linker_script

KB = 1024


def test_every_board_loads_and_is_consistent():
    assert {"qemu-m7", "stm32f746", "stm32f427", "stm32h743"} <= set(board_names())
    for name in board_names():
        board = load_board(name)
        assert board.name == name and validate_board(board) == []
        assert board.ram_region.length == board.sram_bytes
        assert board.flash_region.length == board.flash_bytes
        assert board.uart is not None and board.uart.baud == 115_200
        assert board.cpu_flags.gcc_flags()[0] == f"-mcpu={board.cpu_flags.mcpu}"


def test_budgets_and_memory_maps_match_the_chips():
    f746, qemu = load_board("stm32f746"), load_board("qemu-m7")
    assert (f746.sram_bytes, f746.flash_bytes) == (qemu.sram_bytes, qemu.flash_bytes) == (327_680, 1_048_576)
    assert f746.flash_region == MemoryRegion("FLASH", 0x0800_0000, 1 << 20, f746.flash_region.note)
    assert (f746.ram_region.origin, f746.upload_protocol) == (0x2000_0000, "stlink")
    assert (f746.platformio_board, f746.platformio_platform) == ("disco_f746ng", "ststm32")
    assert f746.uart is not None and (f746.uart.instance, f746.uart.tx, f746.uart.rx) == ("USART1", "PA9", "PB7")
    assert (qemu.flash_region.origin, qemu.ram_region.origin) == (0, 0x2000_0000)
    assert qemu.qemu is not None and qemu.qemu.machine == "mps2-an500" and qemu.counter == "instructions"
    f427 = load_board("stm32f427")
    assert (f427.core, f427.clock_hz, f427.sram_bytes, f427.flash_bytes) == ("cortex-m4", 180_000_000, 192 * KB,
                                                                             2048 * KB)  # fmt: skip
    assert f427.cpu_flags == CpuFlags("cortex-m4", "fpv4-sp-d16", "hard")
    extra = {r.name: r for r in f427.extra_regions}
    assert (extra["CCM"].origin, extra["CCM"].length) == (0x1000_0000, 64 * KB)
    h743 = load_board("stm32h743")
    assert (h743.ram_region.origin, h743.sram_bytes, h743.clock_hz) == (0x2400_0000, 512 * KB, 480_000_000)
    extra = {r.name: r for r in h743.extra_regions}
    assert (extra["DTCM"].origin, extra["DTCM"].length) == (0x2000_0000, 128 * KB)
    assert h743.flash_region.origin == 0x0800_0000 and h743.flash_bytes == 2048 * KB


def test_six_field_boards_still_work_with_defaults():
    board = Board("tiny", "test board", "cortex-m7", 1, 64 * KB, 256 * KB)
    assert board.ram_region == MemoryRegion("RAM", 0x2000_0000, 64 * KB)
    assert board.flash_region == MemoryRegion("FLASH", 0x0800_0000, 256 * KB)
    assert "-mfpu=fpv5-sp-d16" in board.cpu_flags.gcc_flags() and validate_board(board) == []
    smaller = load_board("qemu-m7").with_sram(8 * KB)
    assert smaller.ram_region.length == smaller.sram_bytes == 8 * KB and validate_board(smaller) == []
    with pytest.raises(BoardError, match="no .cpu. flags"):
        _ = Board("odd", "", "riscv", 1, KB, KB).cpu_flags


def test_inconsistent_and_unknown_boards_are_reported():
    bad = Board("bad", "", "cortex-m4", 1, 64 * KB, 64 * KB, ram=MemoryRegion("RAM", 0x2000_0000, 32 * KB))
    assert any("sram_bytes" in p for p in validate_board(bad))
    overlap = Board("bad", "", "cortex-m4", 1, 64 * KB, 64 * KB, flash=MemoryRegion("FLASH", 0x2000_0000, 64 * KB))
    assert any("overlap" in p for p in validate_board(overlap))
    with pytest.raises(BoardError, match="unknown board 'nope'; known boards: .*qemu-m7, stm32f427"):
        load_board("nope")


def test_linker_script_takes_memory_and_stack_from_the_board():
    script = render_linker_script("stm32h743")
    assert "FLASH (rx) : ORIGIN = 0x08000000, LENGTH = 2097152" in script
    assert "RAM (rwx) : ORIGIN = 0x24000000, LENGTH = 524288" in script
    assert f"__stack_size__ = {STACK_RESERVE_BYTES};" in script and "DTCM" in script
    assert render_linker_script("stm32h743") == script  # deterministic
    with pytest.raises(ValueError):
        render_linker_script("stm32h743", stack_bytes=100)


MINIMAL = """
#include <stdint.h>
extern uint32_t __stack_top__;
void Reset_Handler(void);
__attribute__((section(".isr_vector"), used)) const void *vectors[2] = {&__stack_top__, (void *)Reset_Handler};
int8_t mcf_arena[1000] __attribute__((aligned(8)));
static volatile int counter = 5;
void Reset_Handler(void) { for (;;) { counter++; mcf_arena[counter % 1000] = 1; } }
"""


def _symbols(elf: Path) -> dict[str, int]:
    out = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    return {parts[2]: int(parts[0], 16) for parts in (line.split() for line in out.splitlines()) if len(parts) == 3}


@pytest.mark.parametrize("name", board_names())
def test_linker_script_links_a_program_for_every_board(name, tmp_path):
    board = load_board(name)
    script = write_linker_script(board, tmp_path / "link.ld")
    (tmp_path / "main.c").write_text(MINIMAL)
    elf = tmp_path / "main.elf"
    subprocess.run(["arm-none-eabi-gcc", *board.cpu_flags.gcc_flags(), "-O2", "-fdata-sections", "-nostartfiles",
                    "--specs=nano.specs", "-Wl,--no-warn-rwx-segments", "-T", str(script), str(tmp_path / "main.c"),
                    "-o", str(elf)], check=True, capture_output=True)  # fmt: skip
    sym = _symbols(elf)
    ram, flash = board.ram_region, board.flash_region
    assert sym["vectors"] == sym["__flash_start__"] == flash.origin
    assert (sym["__ram_start__"], sym["__ram_end__"]) == (ram.origin, ram.end)
    assert sym["__stack_top__"] == ram.end and sym["__stack_limit__"] == ram.end - STACK_RESERVE_BYTES
    assert ram.origin <= sym["__arena_start__"] and sym["__arena_end__"] - sym["__arena_start__"] == 1000
    assert sym["__data_start__"] < sym["__data_end__"] and flash.origin < sym["__data_load__"] < flash.end


def test_each_part_names_an_emulated_stand_in_of_its_sizes():
    parts = [load_board(name) for name in board_names() if load_board(name).emulator]
    assert {p.name for p in parts} >= {"stm32f746", "stm32l432kc", "stm32l412kb"}
    for part in parts:
        stand_in = load_board(part.emulator)
        assert stand_in.is_emulated and not part.is_emulated
        assert (stand_in.core, stand_in.sram_bytes, stand_in.flash_bytes) == (part.core, part.sram_bytes,
                                                                             part.flash_bytes)  # fmt: skip
