"""Where the instructions of a kernel variant's fused blocks go, function by function, on the emulated Cortex-M7.

Builds the kernel harness in its profile mode (`MCF_HARNESS_PROFILE`: the MLP block, then the per-head attention
block, once each on one shape) with line information, runs it on QEMU with an execution trace (`-d
in_asm,exec,nochain`: each translated block's instructions once, then one line per executed block) and counts the
instructions executed at every address, the way `-icount` counts them. Each address goes to the innermost function
it was compiled from (`addr2line -i`), so a static inline helper such as the softmax gets its own row instead of
vanishing into the kernel that inlines it. The harness's own code is left out; the C library (memcpy) is kept.

The multiply-accumulate share is the part of the instructions that are SMLAD or SMLAxy: the MAC work itself.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mcuformer.boards import EMULATOR_BOARD
from mcuformer.codegen.ops import OPS
from mcuformer.device.build import _tool
from mcuformer.device.errors import QemuError
from mcuformer.device.kernel_harness import TICK_INSTRUCTIONS, build_harness, harness_command

KERNELS = ("mlp_block", "attention_block_heads")  # the phases profiled (profile_blocks in mcf_variant_bench.c)
PHASE_FUNCTION = "profile_phase"  # entered at the start of each phase and once after the last
# The trace's count of a phase's kernel code and the harness's SysTick count of the phase (40 instructions a tick)
# differ by the instructions around the kernel call, a tick at each end, and the blocks QEMU logs but leaves at
# once when their -icount budget has run out (counted whole here; about 0.05% of the instructions).
TICK_SLACK = 200
TICK_SLACK_FRACTION = 0.002
MAC_MNEMONICS = frozenset({"smlad", "smladx", "smlabb", "smlabt", "smlatb", "smlatt"})
# Headers of one-instruction wrappers and scalar helpers: their instructions count for the function inlining them.
WRAPPER_SOURCES = frozenset({"arm_acle.h", "mcf_dsp.h", "mcf_math.h"})
TRACE_TIMEOUT_S = 600.0
_INSN = re.compile(r"^0x([0-9a-f]{8}):\s+(?:[0-9a-f]{4} ?){1,2}\s+(\S+)")
_TRACE = re.compile(r"^Trace \d+: (0x[0-9a-f]+) \[[0-9a-f]+/([0-9a-f]+)/")
_PHASE = re.compile(r"^PHASE (\w+) (\d+)$", re.MULTILINE)


@dataclass(frozen=True)
class BlockShape:
    """The shape of a transformer block: tokens, width, heads and MLP hidden width."""

    tokens: int
    channels: int
    heads: int
    hidden: int

    @property
    def label(self) -> str:
        return f"{self.tokens}x{self.channels}, {self.heads} heads, hidden {self.hidden}"

    def macs(self, phase: str) -> int:
        """The op table's MACs of the phase's kernel on this shape (full rank)."""
        n, d = self.tokens, self.channels
        dims = {"tokens": n, "channels": d, "heads": self.heads, "qkv_rank": 0, "proj_rank": 0}
        if phase == "mlp_block":
            dims = {"tokens": n, "channels": d, "hidden": self.hidden, "fc1_rank": 0, "fc2_rank": 0}
        macs = OPS[phase].macs
        assert macs is not None
        return macs(dims, {})


@dataclass
class TraceCounts:
    """Instructions executed per address in each phase, and the mnemonic at each address."""

    phases: list[Counter[int]] = field(default_factory=list)
    mnemonics: dict[int, str] = field(default_factory=dict)


def count_trace(lines: Iterable[str], phase_entry: int) -> TraceCounts:
    """Reads a QEMU `-d in_asm,exec,nochain` log: a new phase starts at each executed block that begins at
    phase_entry (phase 0 is everything before the first one).

    Executed blocks are looked up by their host code address, which names one translation: under -icount QEMU
    may translate a shorter block at a pc it already has, and both run afterwards."""
    counts = TraceCounts(phases=[Counter()])
    blocks: dict[str, list[int]] = {}  # host code address -> the guest addresses of the block's instructions
    translated: list[int] | None = None  # the block being listed, until its first execution names its host address
    for line in lines:
        insn = _INSN.match(line)
        if insn is not None and translated is not None:
            address = int(insn.group(1), 16)
            translated.append(address)
            counts.mnemonics[address] = insn.group(2).split(".")[0]
            continue
        if line.startswith("IN:"):
            translated = []
            continue
        trace = _TRACE.match(line)
        if trace is None:
            continue
        host, pc = trace.group(1), int(trace.group(2), 16)
        if translated and translated[0] == pc:
            blocks[host] = translated
        translated = None
        if pc == phase_entry:
            counts.phases.append(Counter())
        phase = counts.phases[-1]
        for address in blocks.get(host, ()):
            phase[address] += 1
    return counts


def _functions(elf: Path) -> list[tuple[int, int, str]]:
    """(address with the Thumb bit cleared, size, name) of every function symbol that has a size."""
    listing = subprocess.run([_tool("nm"), "-S", str(elf)], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tTwW":
            rows.append((int(parts[0], 16) & ~1, int(parts[1], 16), parts[3]))
    return rows


def attribute(elf: Path, addresses: Iterable[int]) -> dict[int, tuple[str, str]]:
    """Address -> (function, source file): the innermost function of addr2line -i's inline chain that is not an
    instruction wrapper (WRAPPER_SOURCES), so an SMLAD counts for the loop it is in. Addresses without line
    information get their symbol's name and an empty file."""
    wanted = sorted(set(addresses))
    if not wanted:
        return {}
    command = [_tool("addr2line"), "-e", str(elf), "-a", "-f", "-i", *(f"0x{a:x}" for a in wanted)]
    lines = subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()
    # addr2line prints, per address: the address, then (function, file:line) pairs, innermost first.
    chains: dict[int, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    function: str | None = None
    for line in lines:
        if line.startswith("0x"):
            current, function = chains.setdefault(int(line, 16), []), None
        elif function is None:
            function = line.strip()
        else:
            if current is not None:
                current.append((function, line.split(":")[0]))
            function = None
    symbols = _functions(elf)
    result: dict[int, tuple[str, str]] = {}
    for address in wanted:
        frames = [f for f in chains.get(address, []) if not f[1].startswith("??")]
        kept = [f for f in frames if Path(f[1]).name not in WRAPPER_SOURCES]
        if kept or frames:
            result[address] = (kept or frames)[0]
        else:
            name = next((n for start, size, n in symbols if start <= address < start + max(size, 1)), "??")
            result[address] = (name, "")
    return result


@dataclass(frozen=True)
class PhaseHotspots:
    """One fused kernel's instructions per function, with its MACs and its multiply-accumulate instructions."""

    kernel: str
    macs: int
    functions: dict[str, int]  # innermost function -> instructions, largest first
    mac_instructions: int

    @property
    def total(self) -> int:
        return sum(self.functions.values())

    def table(self, limit: int = 12) -> list[str]:
        lines = ["| function | instructions | share | per MAC |", "|---|---|---|---|"]
        shown = list(self.functions.items())[:limit]
        for name, count in shown:
            lines.append(f"| `{name}` | {count:,} | {100 * count / self.total:.1f}% | {count / self.macs:.3f} |")
        rest = self.total - sum(c for _, c in shown)
        if rest:
            lines.append(f"| (other) | {rest:,} | {100 * rest / self.total:.1f}% | {rest / self.macs:.3f} |")
        lines.append(f"| **total** | {self.total:,} | 100% | {self.total / self.macs:.3f} |")
        return lines


def summarize(
    counts: TraceCounts, where: dict[int, tuple[str, str]], names: list[str], shape: BlockShape
) -> list[PhaseHotspots]:
    """The kernel phases (KERNELS) among the named phases of a profile run, the harness's own code
    (firmware/kernels/test/) left out. names[i] is the phase that trace phase i + 1 counts."""
    result = []
    for name, phase in zip(names, counts.phases[1:], strict=False):
        if name not in KERNELS:
            continue
        functions: Counter[str] = Counter()
        mac_instructions = 0
        for address, executed in phase.items():
            function, source = where[address]
            if "/test/" in source:
                continue
            functions[function] += executed
            if counts.mnemonics.get(address) in MAC_MNEMONICS:
                mac_instructions += executed
        result.append(PhaseHotspots(name, shape.macs(name), dict(functions.most_common()), mac_instructions))
    return result


def check_against_ticks(hotspots: list[PhaseHotspots], phases: list[tuple[str, int]]) -> None:
    """Raises QemuError unless each kernel's traced count is its phase's SysTick count (phases: the PHASE lines,
    each with the ticks of the phase before it)."""
    ticks = {name: phases[i + 1][1] for i, (name, _) in enumerate(phases[:-1])}
    for phase in hotspots:
        measured = ticks[phase.kernel] * TICK_INSTRUCTIONS
        if abs(phase.total - measured) > TICK_SLACK + TICK_SLACK_FRACTION * measured:
            raise QemuError(
                f"the trace counts {phase.total:,} instructions in {phase.kernel}, SysTick {measured:,}: "
                "the trace reader lost blocks (a QEMU log format it does not know?)"
            )


def profile_blocks(
    shape: BlockShape, work: Path, variant: str = "dsp", board: str = EMULATOR_BOARD, timeout: float = TRACE_TIMEOUT_S
) -> list[PhaseHotspots]:
    """Builds the profile harness for `shape`, traces it on QEMU and returns each fused kernel's hotspots."""
    define = f"-DMCF_PROFILE_SHAPE={shape.tokens},{shape.channels},{shape.heads},{shape.hidden}"
    flags = ("-g", "-DMCF_HARNESS_PROFILE", define)
    elf = build_harness(work, variant, board, extra_flags=flags)
    entry = next((start for start, _, name in _functions(elf) if name == PHASE_FUNCTION), None)
    if entry is None:
        raise QemuError(f"{elf.name} has no {PHASE_FUNCTION}: not a profile build of the kernel harness")
    read_end, write_end = os.pipe()
    command = [*harness_command(elf, board), "-d", "in_asm,exec,nochain", "-D", f"/dev/fd/{write_end}"]
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=(write_end,))
    except OSError as err:
        os.close(read_end)
        os.close(write_end)
        raise QemuError(f"cannot run {command[0]}: {err}; install qemu-system-arm") from None
    os.close(write_end)  # QEMU holds the only writer: the log ends when it exits
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        with os.fdopen(read_end, "r", errors="replace") as log:
            counts = count_trace(log, entry)
        output = process.communicate()[0].decode("utf-8", errors="replace")
    finally:
        timer.cancel()
    if process.returncode != 0 or "DONE" not in output:
        raise QemuError(f"the profile harness ended badly (status {process.returncode}): {output.strip()[-800:]}")
    phases = [(name, int(ticks)) for name, ticks in _PHASE.findall(output)]
    if len(counts.phases) != len(phases) + 1:
        raise QemuError(f"the trace shows {len(counts.phases) - 1} phase marks, the harness printed {len(phases)}")
    addresses = set().union(*(set(p) for p in counts.phases[1:]))
    hotspots = summarize(counts, attribute(elf, addresses), [name for name, _ in phases], shape)
    check_against_ticks(hotspots, phases)
    return hotspots


__all__ = [
    "BlockShape",
    "PhaseHotspots",
    "TraceCounts",
    "attribute",
    "check_against_ticks",
    "count_trace",
    "profile_blocks",
    "summarize",
]
