"""Builds the firmware ELF of a compiled model for a board with arm-none-eabi-gcc, and measures it.

Sources: the int8 kernels, the generated model (build/<name>/src), the runtime (firmware/runtime) and the board
support (firmware/bsp/<board.bsp>); the linker script is rendered from the board descriptor. Every file is compiled
with -O2 -Wall -Wextra -Werror, in parallel, and linked with --gc-sections against newlib-nano.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcuformer.boards import Board, load_board
from mcuformer.codegen.build_dir import BuildDir, read_manifest
from mcuformer.codegen.host_build import KERNEL_INCLUDE, kernel_sources
from mcuformer.codegen.report import STACK_RESERVE_BYTES
from mcuformer.device.errors import FirmwareBudgetError, FirmwareBuildError
from mcuformer.device.linker import write_linker_script
from mcuformer.firmware import FIRMWARE_DIR

CROSS = "arm-none-eabi-"
RUNTIME_DIR = FIRMWARE_DIR / "runtime"
BSP_DIR = FIRMWARE_DIR / "bsp"
C_FLAGS = ("-std=c11", "-O2", "-g", "-ffunction-sections", "-fdata-sections", "-fno-common",
           "-Wall", "-Wextra", "-Werror")  # fmt: skip
LINK_FLAGS = ("-nostartfiles", "--specs=nano.specs", "-Wl,--gc-sections", "-Wl,--no-warn-rwx-segments")
ERROR_LINES = 20
INSTALL_HINT = ("apt-get install --no-install-recommends gcc-arm-none-eabi libnewlib-arm-none-eabi "
                "binutils-arm-none-eabi")  # fmt: skip
_OVERFLOW = re.compile(r"region `(\w+)' overflowed by (\d+) bytes")

FLASH_SECTIONS = (".isr_vector", ".text", ".rodata", ".ARM.extab", ".ARM.exidx", ".data")
RAM_SECTIONS = (".data", ".arena", ".bss", ".stack")


@dataclass(frozen=True)
class FirmwareSize:
    """Bytes per section of the ELF, and the totals against the board's budgets."""

    sections: dict[str, int]
    arena_symbol_bytes: int  # size of mcf_arena (arm-none-eabi-nm -S)
    flash_budget: int
    ram_budget: int

    @property
    def flash_bytes(self) -> int:
        """Code + constants + the load image of .data."""
        return sum(self.sections.get(name, 0) for name in FLASH_SECTIONS)

    @property
    def ram_bytes(self) -> int:
        """.data + arena + .bss + stack (the gap between .bss and the stack is free)."""
        return sum(self.sections.get(name, 0) for name in RAM_SECTIONS)

    @property
    def static_bytes(self) -> int:
        """RAM outside the arena and the stack: .data + .bss (serial buffers, counters, library state)."""
        return self.sections.get(".data", 0) + self.sections.get(".bss", 0)

    @property
    def stack_bytes(self) -> int:
        return self.sections.get(".stack", 0)

    def summary(self) -> str:
        s = self.sections
        return (
            f"flash {self.flash_bytes:,} B of {self.flash_budget:,} (text {s.get('.text', 0):,}, rodata "
            f"{s.get('.rodata', 0):,}, data {s.get('.data', 0):,}); RAM {self.ram_bytes:,} B of "
            f"{self.ram_budget:,} (arena {s.get('.arena', 0):,}, stack {self.stack_bytes:,}, statics "
            f"{self.static_bytes:,})"
        )


@dataclass(frozen=True)
class Firmware:
    elf: Path
    board: Board
    size: FirmwareSize
    map_file: Path
    linker_script: Path
    manifest: dict[str, Any]
    debug_commands: bool


def _tool(name: str) -> str:
    path = shutil.which(CROSS + name)
    if path is None:
        raise FirmwareBuildError(f"{CROSS}{name} not found on PATH; install the Arm toolchain: {INSTALL_HINT}")
    return path


def _run(command: Sequence[str], what: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(command), capture_output=True, text=True, check=False, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise FirmwareBuildError(f"{what}: cannot run {command[0]}: {err}") from None


def _first_lines(text: str) -> str:
    return "\n".join(text.strip().splitlines()[:ERROR_LINES])


def firmware_sources(build_dir: Path, board: Board, kernel_variant: str | None = None) -> list[Path]:
    """Every C file of the firmware of `build_dir` for `board` (kernels: `kernel_variant`, default the board's)."""
    if board.bsp is None:
        raise FirmwareBuildError(
            f"board {board.name} has no board support package yet (no `bsp` in boards/{board.name}.toml); "
            f"available: {', '.join(sorted(p.name for p in BSP_DIR.iterdir() if p.is_dir()))}"
        )
    bsp = BSP_DIR / board.bsp
    model = sorted(BuildDir(build_dir).src.glob("*.c"))
    if not model:
        raise FirmwareBuildError(f"{build_dir}/src has no generated C; run `mcuformer compile` first")
    if not bsp.is_dir():
        raise FirmwareBuildError(f"board {board.name} names bsp {board.bsp!r} but {bsp} does not exist")
    kernels = kernel_sources(kernel_variant or board.kernels)
    return [*kernels, *model, *sorted(RUNTIME_DIR.glob("*.c")), *sorted(bsp.glob("*.c"))]


def _compile_flags(build_dir: Path, board: Board, debug_commands: bool) -> list[str]:
    assert board.bsp is not None
    return [
        *board.cpu_flags.gcc_flags(),
        *C_FLAGS,
        f'-DMCF_BOARD_NAME="{board.name}"',
        f"-DMCF_BOARD_CLOCK_HZ={board.clock_hz}u",
        f"-DMCF_DEBUG_COMMANDS={int(debug_commands)}",
        "-DMCF_PROFILE=1",
        *BuildDir(build_dir).kernel_flags(),
        f"-I{BuildDir(build_dir).src}",
        f"-I{KERNEL_INCLUDE}",
        f"-I{RUNTIME_DIR}",
        f"-I{BSP_DIR / board.bsp}",
    ]


def _object_name(source: Path) -> str:
    parent = source.parent.name
    return f"{parent}__{source.stem}.o"


def build_firmware(
    build_dir: str | Path,
    board: str | Board | None = None,
    *,
    out_dir: str | Path | None = None,
    debug_commands: bool = False,
    kernel_variant: str | None = None,
    stack_bytes: int = STACK_RESERVE_BYTES,
    jobs: int | None = None,
) -> Firmware:
    """Compile and link build_dir's model into firmware.elf for `board` (default: the board it was compiled for).

    kernel_variant picks the kernel library (firmware/kernels/<variant>); None: the board's (`kernels`).
    Raises FirmwareBudgetError (one line, with the overflow in bytes) when the image does not fit the board's RAM or
    flash, FirmwareBuildError for any other compiler or linker failure.
    """
    build = Path(build_dir)
    manifest = read_manifest(build)
    target = load_board(board or str(manifest["board"]))
    suffix = ("-debug" if debug_commands else "") + (f"-{kernel_variant}" if kernel_variant else "")
    out = Path(out_dir) if out_dir is not None else BuildDir(build).firmware(target.name, suffix)
    obj_dir = out / "obj"
    obj_dir.mkdir(parents=True, exist_ok=True)
    gcc = _tool("gcc")
    sources = firmware_sources(build, target, kernel_variant)
    flags = _compile_flags(build, target, debug_commands)

    def compile_one(source: Path) -> Path:
        obj = obj_dir / _object_name(source)
        proc = _run([gcc, *flags, "-c", str(source), "-o", str(obj)], f"compiling {source.name}")
        if proc.returncode != 0:
            raise FirmwareBuildError(
                f"compiling {source} for {target.name} failed:\n{_first_lines(proc.stderr or proc.stdout)}"
            )
        return obj

    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 2) as pool:
        objects = list(pool.map(compile_one, sources))
    script = write_linker_script(target, out / "link.ld", stack_bytes)
    elf, map_file = out / "firmware.elf", out / "firmware.map"
    proc = _run([gcc, *target.cpu_flags.gcc_flags(), *LINK_FLAGS, f"-Wl,-Map={map_file}", "-T", str(script),
                 *map(str, objects), "-o", str(elf)], "linking")  # fmt: skip
    if proc.returncode != 0:
        _raise_link_error(proc.stderr or proc.stdout, target, manifest, stack_bytes)
    size = measure_elf(elf, target)
    return Firmware(elf, target, size, map_file, script, manifest, debug_commands)


def _raise_link_error(output: str, board: Board, manifest: dict[str, Any], stack_bytes: int) -> None:
    overflows = {region: int(n) for region, n in _OVERFLOW.findall(output)}
    if "RAM" in overflows:
        n = overflows["RAM"]
        budget = board.ram_region.length
        raise FirmwareBudgetError(
            f"firmware for {board.name} does not fit: region RAM overflowed by {n:,} bytes (data + arena "
            f"{manifest.get('arena_bytes', 0):,} + bss + stack {stack_bytes:,} need {budget + n:,} B, the board "
            f"has {budget:,} B)",
            "RAM",
            n,
        )
    if overflows:
        region, n = next(iter(overflows.items()))
        raise FirmwareBudgetError(
            f"firmware for {board.name} does not fit: region {region} overflowed by {n:,} bytes "
            f"(the board has {board.flash_region.length:,} B of flash)",
            region,
            n,
        )
    raise FirmwareBuildError(f"linking the firmware for {board.name} failed:\n{_first_lines(output)}")


def measure_elf(elf: Path, board: Board) -> FirmwareSize:
    """Section sizes (arm-none-eabi-size -A) and the size of mcf_arena (arm-none-eabi-nm -S)."""
    proc = _run([_tool("size"), "-A", "-d", str(elf)], "measuring the firmware")
    if proc.returncode != 0:
        raise FirmwareBuildError(f"{CROSS}size failed on {elf}: {_first_lines(proc.stderr)}")
    sections: dict[str, int] = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    proc = _run([_tool("nm"), "-S", str(elf)], "reading symbols")
    arena = 0
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] == "mcf_arena":
            arena = int(parts[1], 16)
    return FirmwareSize(sections, arena, board.flash_region.length, board.ram_region.length)
