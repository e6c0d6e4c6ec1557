"""Board descriptors: one TOML file per board in this folder; every board fact is read from there.

A descriptor names the budget the compiler plans against (`sram_bytes`, `flash_bytes`), the memory map the linker
script is rendered from (`[memory]`: the FLASH and RAM regions the firmware is linked into, plus extra regions such as
CCM/DTCM/ITCM listed with their real addresses), the compiler flags of the core (`[cpu]`), the serial port the runtime
talks on (`[uart]`), how firmware gets onto the chip (`[upload]`, `[platformio]`) and, for emulated boards, the QEMU
machine (`[qemu]`). Only the first six fields are required, so `Board(name, description, core, clock_hz, sram_bytes,
flash_bytes)` still describes a board; the rest falls back to the defaults of its core.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mcuformer.errors import McuformerError

BOARDS_DIR = Path(__file__).resolve().parent
# The tool's defaults: the board a model is compiled and searched for, and the emulator that stands in for it.
DEFAULT_BOARD = "stm32f746"
EMULATOR_BOARD = "qemu-m7"
DEFAULT_FLASH_ORIGIN = 0x0800_0000  # STM32 main flash
DEFAULT_RAM_ORIGIN = 0x2000_0000  # SRAM (bit-band) region of every Cortex-M
DEFAULT_BAUD = 115_200


class BoardError(McuformerError):
    pass


@dataclass(frozen=True)
class MemoryRegion:
    """A contiguous address range: [origin, origin + length)."""

    name: str
    origin: int
    length: int
    note: str = ""

    @property
    def end(self) -> int:
        return self.origin + self.length

    def overlaps(self, other: MemoryRegion) -> bool:
        return self.origin < other.end and other.origin < self.end


@dataclass(frozen=True)
class CpuFlags:
    """What arm-none-eabi-gcc needs for the core: -mcpu, -mfpu (None: no FPU) and -mfloat-abi."""

    mcpu: str
    fpu: str | None = None
    float_abi: str = "soft"

    def gcc_flags(self) -> tuple[str, ...]:
        flags = [f"-mcpu={self.mcpu}", "-mthumb", f"-mfloat-abi={self.float_abi}"]
        if self.fpu is not None and self.float_abi != "soft":
            flags.append(f"-mfpu={self.fpu}")
        return tuple(flags)


@dataclass(frozen=True)
class Uart:
    """The serial port the runtime speaks its protocol on."""

    instance: str
    base: int
    tx: str = ""
    rx: str = ""
    baud: int = DEFAULT_BAUD
    note: str = ""


@dataclass(frozen=True)
class QemuTarget:
    """How to emulate the board: `qemu-system-arm -M <machine> -cpu <cpu>`."""

    machine: str
    cpu: str
    extra_args: tuple[str, ...] = ()


# Defaults of the cores we know: the flags GCC needs for their single-precision FPU (if any).
CORE_DEFAULTS: dict[str, CpuFlags] = {
    "cortex-m0": CpuFlags("cortex-m0"),
    "cortex-m0plus": CpuFlags("cortex-m0plus"),
    "cortex-m3": CpuFlags("cortex-m3"),
    "cortex-m4": CpuFlags("cortex-m4", "fpv4-sp-d16", "hard"),
    "cortex-m7": CpuFlags("cortex-m7", "fpv5-sp-d16", "hard"),
    "cortex-m33": CpuFlags("cortex-m33", "fpv5-sp-d16", "hard"),
    "cortex-m55": CpuFlags("cortex-m55", "auto", "hard"),
}
_FLOAT_ABIS = ("soft", "softfp", "hard")
# Cores with the ARMv7E-M/ARMv8-M DSP extension (SXTB16, SMLAD): their firmware gets the `dsp` kernels by default.
DSP_CORES = frozenset({"cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55"})
KERNEL_VARIANTS = ("portable", "dsp")  # folders of firmware/kernels (mcuformer.codegen.host_build.kernel_sources)


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    core: str
    clock_hz: int
    sram_bytes: int  # the SRAM budget: data + bss + arena + stack must fit (it is the RAM region's length)
    flash_bytes: int  # the flash budget: code + constants + .data's load image (the FLASH region's length)
    flash: MemoryRegion | None = None  # None: DEFAULT_FLASH_ORIGIN, flash_bytes long
    ram: MemoryRegion | None = None  # None: DEFAULT_RAM_ORIGIN, sram_bytes long
    extra_regions: tuple[MemoryRegion, ...] = ()  # CCM, DTCM, ITCM, backup SRAM...: listed, not linked into
    cpu: CpuFlags | None = None  # None: CORE_DEFAULTS[core]
    uart: Uart | None = None
    bsp: str | None = None  # folder of firmware/bsp/ with the board support code (None: no firmware yet)
    counter: str = "cycles"  # what the runtime's performance counter counts: "cycles" or "instructions"
    upload_protocol: str | None = None  # "stlink", "jlink", ...; "qemu" for emulated boards
    platformio_board: str | None = None  # board id of the stock PlatformIO platform
    platformio_platform: str | None = None
    qemu: QemuTarget | None = None
    kernel_variant: str | None = None  # `kernels` in the TOML; None: "dsp" on a DSP core, else "portable"
    # Assumed cycles per instruction of the int8 kernels on this part: turns the cost model's instructions (what
    # QEMU counts) into time at clock_hz. An assumption stated in the board file, not a measurement.
    cycles_per_instruction: float = 1.0
    search_space: str | None = None  # the space file of search/spaces/ (None: <name>.toml, else default.toml)
    emulator: str | None = None  # the emulated board standing in for this part (its sizes, on QEMU)

    def seconds(self, instructions: float) -> float:
        """The time `instructions` take at the board's clock and assumed cycles per instruction."""
        return instructions * self.cycles_per_instruction / self.clock_hz

    def instructions_within(self, seconds: float) -> int:
        """How many instructions fit in `seconds` (the inverse of `seconds`)."""
        return int(seconds * self.clock_hz / self.cycles_per_instruction)

    @property
    def kernels(self) -> str:
        """The kernel library the board's firmware is built with (the host build always uses portable)."""
        if self.kernel_variant is not None:
            return self.kernel_variant
        return "dsp" if self.core in DSP_CORES else "portable"

    @property
    def flash_region(self) -> MemoryRegion:
        return self.flash or MemoryRegion("FLASH", DEFAULT_FLASH_ORIGIN, self.flash_bytes)

    @property
    def ram_region(self) -> MemoryRegion:
        return self.ram or MemoryRegion("RAM", DEFAULT_RAM_ORIGIN, self.sram_bytes)

    @property
    def cpu_flags(self) -> CpuFlags:
        if self.cpu is not None:
            return self.cpu
        if self.core not in CORE_DEFAULTS:
            raise BoardError(f"board {self.name}: no [cpu] flags and no defaults for core {self.core!r}")
        return CORE_DEFAULTS[self.core]

    @property
    def is_emulated(self) -> bool:
        return self.qemu is not None

    def with_sram(self, sram_bytes: int) -> Board:
        """The same board with another SRAM budget (the RAM region shrinks or grows with it)."""
        ram = self.ram_region
        return replace(self, sram_bytes=sram_bytes, ram=replace(ram, length=sram_bytes))


def board_names() -> list[str]:
    return sorted(p.stem for p in BOARDS_DIR.glob("*.toml"))


def load_board(name: str | Board) -> Board:
    """The board named `name` (boards/<name>.toml, validated); a Board passes through unchanged."""
    if isinstance(name, Board):
        return name
    path = BOARDS_DIR / f"{name}.toml"
    if not path.is_file():
        raise BoardError(f"unknown board {name!r}; known boards: {', '.join(board_names())}")
    try:
        data = tomllib.loads(path.read_text())
        board = _board_from_dict(data)
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as err:
        raise BoardError(f"board file {path} is malformed: {type(err).__name__}: {err}") from None
    problems = validate_board(board)
    if board.name != name:
        problems.append(f"name {board.name!r} differs from the file name {name!r}")
    if problems:
        raise BoardError(f"board file {path} is inconsistent: " + "; ".join(problems))
    return board


def _region(name: str, table: dict[str, Any]) -> MemoryRegion:
    return MemoryRegion(str(table.get("name", name)), int(table["origin"]), int(table["length"]),
                        str(table.get("note", "")))  # fmt: skip


def _board_from_dict(data: dict[str, Any]) -> Board:
    memory = data.get("memory", {})
    cpu = data.get("cpu")
    uart = data.get("uart")
    qemu = data.get("qemu")
    pio = data.get("platformio", {})
    return Board(
        name=data["name"],
        description=data["description"],
        core=data["core"],
        clock_hz=int(data["clock_hz"]),
        sram_bytes=int(data["sram_bytes"]),
        flash_bytes=int(data["flash_bytes"]),
        flash=_region("FLASH", memory["flash"]) if "flash" in memory else None,
        ram=_region("RAM", memory["ram"]) if "ram" in memory else None,
        extra_regions=tuple(_region(r["name"], r) for r in memory.get("extra", [])),
        cpu=CpuFlags(cpu["mcpu"], cpu.get("fpu"), cpu.get("float_abi", "soft")) if cpu else None,
        uart=Uart(
            uart["instance"],
            int(uart["base"]),
            uart.get("tx", ""),
            uart.get("rx", ""),
            int(uart.get("baud", DEFAULT_BAUD)),
            uart.get("note", ""),
        )
        if uart
        else None,
        bsp=data.get("bsp"),
        counter=data.get("counter", "cycles"),
        upload_protocol=data.get("upload", {}).get("protocol"),
        platformio_board=pio.get("board"),
        platformio_platform=pio.get("platform"),
        qemu=QemuTarget(qemu["machine"], qemu["cpu"], tuple(qemu.get("extra_args", []))) if qemu else None,
        kernel_variant=data.get("kernels"),
        cycles_per_instruction=float(data.get("cycles_per_instruction", 1.0)),
        search_space=data.get("search_space"),
        emulator=data.get("emulator"),
    )


def validate_board(board: Board) -> list[str]:
    """Inconsistencies between a board's facts (empty when it is sound)."""
    problems = []
    if board.sram_bytes <= 0 or board.flash_bytes <= 0 or board.clock_hz <= 0:
        problems.append("sram_bytes, flash_bytes and clock_hz must be positive")
    if not 0.1 <= board.cycles_per_instruction <= 10:
        problems.append(f"cycles_per_instruction {board.cycles_per_instruction} is not a plausible assumption")
    ram, flash = board.ram_region, board.flash_region
    if ram.length != board.sram_bytes:
        problems.append(f"RAM region is {ram.length} B but sram_bytes is {board.sram_bytes}: they are one fact")
    if flash.length != board.flash_bytes:
        problems.append(f"FLASH region is {flash.length} B but flash_bytes is {board.flash_bytes}")
    if ram.overlaps(flash):
        problems.append("the RAM and FLASH regions overlap")
    for region in (ram, flash):
        if region.origin % 4 or region.length % 32:
            problems.append(f"{region.name} must start word aligned and be a multiple of 32 B long")
    if board.cpu is not None and board.cpu.float_abi not in _FLOAT_ABIS:
        problems.append(f"float_abi must be one of {', '.join(_FLOAT_ABIS)}")
    if board.counter not in ("cycles", "instructions"):
        problems.append("counter must be 'cycles' or 'instructions'")
    if board.kernels not in KERNEL_VARIANTS:
        problems.append(f"kernels must be one of {', '.join(KERNEL_VARIANTS)}")
    elif board.kernels == "dsp" and board.core not in DSP_CORES:
        problems.append(f"kernels = 'dsp' needs a core with the DSP extension ({', '.join(sorted(DSP_CORES))})")
    if board.uart is not None and board.uart.baud <= 0:
        problems.append("uart baud must be positive")
    return problems
