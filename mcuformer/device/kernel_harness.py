"""Checks and times a kernel variant against the portable kernels on the emulated Cortex-M7.

Builds the harness (firmware/kernels/test/: mcf_harness.c, the checks in mcf_variant_check.c and the benchmark in
mcf_variant_bench.c) into a bare-metal ELF that holds the variant's library (its own files plus the portable files it
does not override) and a second copy of the portable library whose public symbols
are renamed ref_mcf_* (objcopy --redefine-sym), runs it on QEMU mps2-an500 under `-icount shift=0` and parses what
it prints over semihosting: mismatches per op (random and edge cases, compared byte for byte with guard bytes) and
instruction counts of both libraries on benchmark shapes.
"""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mcuformer.boards import EMULATOR_BOARD, load_board
from mcuformer.codegen.host_build import KERNEL_INCLUDE, kernel_sources
from mcuformer.device.build import CROSS, _tool
from mcuformer.device.errors import FirmwareBuildError, QemuError
from mcuformer.device.qemu import QEMU
from mcuformer.firmware import KERNELS_DIR

HARNESS_DIR = KERNELS_DIR / "test"
HARNESS_SOURCES = tuple(HARNESS_DIR / f for f in ("mcf_harness.c", "mcf_variant_check.c", "mcf_variant_bench.c"))
HARNESS_LINK_SCRIPT = HARNESS_DIR / "mcf_variant_check.ld"
TICK_INSTRUCTIONS = 40  # mps2-an500's 25 MHz SysTick under -icount shift=0 (1 instruction per ns)
C_FLAGS = ("-std=c11", "-O2", "-ffunction-sections", "-fdata-sections", "-Wall", "-Wextra", "-Werror")
RUN_TIMEOUT_S = 600.0
_PUBLIC = re.compile(r"^[0-9a-f]+ T (mcf_\w+)$", re.MULTILINE)


@dataclass(frozen=True)
class BenchRow:
    """One benchmark shape: MACs per call and instructions per call of the portable and the variant kernel."""

    op: str
    shape: str
    macs: int
    portable_instructions: float
    variant_instructions: float

    @property
    def portable_per_mac(self) -> float:
        return self.portable_instructions / self.macs

    @property
    def variant_per_mac(self) -> float:
        return self.variant_instructions / self.macs


@dataclass(frozen=True)
class HarnessResult:
    checked: dict[str, int]  # op -> cases compared
    mismatches: list[str]  # one line per differing case
    bench: list[BenchRow]
    output: str


def _run(command: list[str], what: str) -> None:
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise FirmwareBuildError(f"{what} failed:\n{(proc.stderr or proc.stdout).strip()[:2000]}")


def build_harness(
    out_dir: Path, variant: str = "dsp", board: str = EMULATOR_BOARD, extra_flags: tuple[str, ...] = ()
) -> Path:
    """The harness ELF comparing `variant` with the portable kernels, compiled for `board`'s core.

    extra_flags go to every compile (the profile build of kernel_hotspots adds -g and its defines)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gcc, objcopy, nm = _tool("gcc"), _tool("objcopy"), _tool("nm")
    flags = [*load_board(board).cpu_flags.gcc_flags(), *C_FLAGS, *extra_flags, f"-I{KERNEL_INCLUDE}"]

    def compile_one(pair: tuple[Path, Path]) -> Path:
        source, obj = pair
        _run([gcc, *flags, "-c", str(source), "-o", str(obj)], f"compiling {source.name}")
        return obj

    jobs = [(s, out_dir / f"ref__{s.stem}.o") for s in kernel_sources("portable")]
    jobs += [(s, out_dir / f"{s.parent.name}__{s.stem}.o") for s in kernel_sources(variant)]
    jobs += [(s, out_dir / f"harness__{s.stem}.o") for s in HARNESS_SOURCES]
    with ThreadPoolExecutor(max_workers=2) as pool:
        objects = list(pool.map(compile_one, jobs))
    ref_objects = [o for o in objects if o.name.startswith("ref__")]
    public: set[str] = set()
    for obj in ref_objects:
        listing = subprocess.run([nm, str(obj)], capture_output=True, text=True, check=True).stdout
        public.update(_PUBLIC.findall(listing))
    renames = out_dir / "ref_renames.txt"
    renames.write_text("".join(f"{name} ref_{name}\n" for name in sorted(public)))
    for obj in ref_objects:
        _run([objcopy, f"--redefine-syms={renames}", str(obj)], f"renaming the symbols of {obj.name}")
    elf = out_dir / f"variant_check_{variant}.elf"
    _run([gcc, *load_board(board).cpu_flags.gcc_flags(), "-nostartfiles", "--specs=nano.specs",
          "-Wl,--gc-sections", "-Wl,--no-warn-rwx-segments", "-T", str(HARNESS_LINK_SCRIPT),
          *map(str, objects), "-o", str(elf)], "linking the kernel harness")  # fmt: skip
    return elf


def harness_command(elf: Path, board: str = EMULATOR_BOARD) -> list[str]:
    """The QEMU command line that runs a harness ELF (semihosting output, counting instructions)."""
    target = load_board(board)
    if target.qemu is None:
        raise QemuError(f"board {board} is not emulated: the kernel harness runs on QEMU only")
    return [QEMU, "-M", target.qemu.machine, "-cpu", target.qemu.cpu, "-kernel", str(elf), "-display", "none",
            "-monitor", "none", "-serial", "none", "-icount", "shift=0",
            "-semihosting-config", "enable=on,target=native"]  # fmt: skip


def run_harness(elf: Path, board: str = EMULATOR_BOARD, timeout: float = RUN_TIMEOUT_S) -> HarnessResult:
    """Runs the harness on QEMU and parses its report; raises QemuError if it does not finish cleanly."""
    command = harness_command(elf, board)
    try:
        proc = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise QemuError(f"the kernel harness {elf.name} did not finish within {timeout:.0f} s on QEMU") from None
    except OSError as err:
        raise QemuError(f"cannot run {QEMU}: {err}; install qemu-system-arm") from None
    output = (proc.stdout + proc.stderr).decode("utf-8", errors="replace")
    done = re.search(r"^DONE (\d+)$", output, re.MULTILINE)
    if proc.returncode != 0 or done is None:
        raise QemuError(f"the kernel harness ended badly (status {proc.returncode}): {output.strip()[-800:]}")
    checked = {op: int(n) for op, n in re.findall(r"^CHECKED (\w+) (\d+)$", output, re.MULTILINE)}
    mismatches = re.findall(r"^CASE .*$", output, re.MULTILINE)
    bench = [
        BenchRow(
            op, shape, int(macs), int(ref) * TICK_INSTRUCTIONS / int(reps), int(var) * TICK_INSTRUCTIONS / int(reps)
        )  # fmt: skip
        for op, shape, macs, ref, var, reps in re.findall(
            r"^BENCH (\w+) (\S+) (\d+) (\d+) (\d+) (\d+)$", output, re.MULTILINE
        )
    ]
    return HarnessResult(checked, mismatches, bench, output)


__all__ = ["CROSS", "BenchRow", "HarnessResult", "build_harness", "harness_command", "run_harness"]
