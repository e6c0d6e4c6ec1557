"""Per-op profile of a compiled model on a board: MACs, instructions (QEMU) or cycles (real board) per op.

    mcuformer profile build/<name> --board qemu-m7 [--port /dev/ttyACM0] [--kernels portable|dsp] [--json out.json]

The firmware counts every op (MCF_PROFILE: the generated mcf_model.c marks the end of each op, the runtime keeps the
counter deltas) and reports them with the PROFILE message after an INFER. On QEMU (`-icount shift=0`) the counter
counts instructions with a resolution of 40 (one 25 MHz timer tick); on a real board (DWT CYCCNT) it counts cycles.
MACs per op come from the op table (mcuformer.codegen.ops) on the graph, re-derived from the build's model.pt like
`eval` does.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mcuformer.boards import EMULATOR_BOARD, load_board
from mcuformer.checkpoint import load_model
from mcuformer.codegen.build_dir import BuildDir, read_manifest
from mcuformer.codegen.compiler import build_graph
from mcuformer.codegen.ops import graph_macs
from mcuformer.data import load_dataset
from mcuformer.errors import McuformerError
from mcuformer.quant import reference

# Cycles per instruction assumed to turn QEMU instruction counts into a Cortex-M7 latency range: the M7 issues up to
# two instructions per cycle (loads next to SMLADs in these kernels), and flash wait states, AXI stalls and branch
# mispredictions add cycles; 0.6 to 1.5 brackets what DSP-heavy int8 code runs at from zero-wait-state memory (TCM /
# ART-accelerated flash) to code and weights behind a cold cache. An assumption, not a measurement.
CPI_RANGE = (0.6, 1.5)
M7_CLOCK_HZ = 216_000_000  # STM32F746


@dataclass(frozen=True)
class OpProfile:
    index: int
    name: str
    kind: str
    macs: int
    count: int  # instructions or cycles (Profile.counter)

    @property
    def per_mac(self) -> float | None:
        return self.count / self.macs if self.macs else None


@dataclass(frozen=True)
class Profile:
    model: str
    board: str
    kernels: str  # the kernel variant of the firmware
    counter: str  # "instructions" or "cycles"
    resolution: int  # counter ticks are this many units (40 instructions on QEMU, 1 cycle on a board)
    inference_count: int  # the INFER reply's count for the whole inference
    ops: tuple[OpProfile, ...]

    @property
    def total(self) -> int:
        return sum(op.count for op in self.ops)

    @property
    def total_macs(self) -> int:
        return sum(op.macs for op in self.ops)

    def by_kind(self) -> dict[str, tuple[int, int]]:
        """kind -> (MACs, count), summed over the ops of that kind."""
        kinds: dict[str, tuple[int, int]] = {}
        for op in self.ops:
            macs, count = kinds.get(op.kind, (0, 0))
            kinds[op.kind] = (macs + op.macs, count + op.count)
        return kinds

    def latency_ms(self, clock_hz: int = M7_CLOCK_HZ) -> tuple[float, float]:
        """Estimated (low, high) milliseconds per inference on a Cortex-M7 at clock_hz (cycles: exact)."""
        if self.counter == "cycles":
            ms = 1e3 * self.total / clock_hz
            return ms, ms
        return tuple(1e3 * self.total * cpi / clock_hz for cpi in CPI_RANGE)  # type: ignore[return-value]

    def table(self) -> str:
        unit = "instr" if self.counter == "instructions" else "cycles"
        width = max(len(op.name) for op in self.ops) if self.ops else 4
        lines = [f"{'#':>3}  {'op':<{width}}  {'kind':<22} {'MACs':>12} {unit:>12} {unit + '/MAC':>10} {'share':>6}"]
        total = max(self.total, 1)
        for op in self.ops:
            per = f"{op.per_mac:10.3f}" if op.per_mac is not None else f"{'-':>10}"
            lines.append(f"{op.index:>3}  {op.name:<{width}}  {op.kind:<22} {op.macs:>12,} {op.count:>12,} {per} "
                         f"{100 * op.count / total:5.1f}%")  # fmt: skip
        per_total = f"{self.total / self.total_macs:10.3f}" if self.total_macs else f"{'-':>10}"
        lines.append(f"{'':>3}  {'total':<{width}}  {'':<22} {self.total_macs:>12,} {self.total:>12,} {per_total} "
                     f"100.0%")  # fmt: skip
        lines.append("")
        lines.append("by kind: " + ", ".join(
            f"{kind} {100 * count / total:.1f}%" + (f" ({count / macs:.2f} {unit}/MAC)" if macs else "")
            for kind, (macs, count) in sorted(self.by_kind().items(), key=lambda kv: -kv[1][1])
        ))  # fmt: skip
        low, high = self.latency_ms()
        if self.counter == "instructions":
            lines.append(f"{self.model} on {self.board} ({self.kernels} kernels): {self.total:,} instructions per "
                         f"inference (resolution {self.resolution} per op); on a 216 MHz Cortex-M7 about "
                         f"{low:.1f}-{high:.1f} ms, assuming {CPI_RANGE[0]}-{CPI_RANGE[1]} cycles per "
                         "instruction")  # fmt: skip
        else:
            lines.append(f"{self.model} on {self.board} ({self.kernels} kernels): {self.total:,} cycles per "
                         f"inference, {low:.2f} ms at {M7_CLOCK_HZ / 1e6:.0f} MHz")  # fmt: skip
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ops"] = [{**asdict(op), "per_mac": op.per_mac} for op in self.ops]
        data.update(total=self.total, total_macs=self.total_macs, latency_ms_216mhz=list(self.latency_ms()),
                    cpi_assumed=list(CPI_RANGE) if self.counter == "instructions" else None)  # fmt: skip
        return data


def profile_build(
    build_dir: str | Path,
    board: str = EMULATOR_BOARD,
    port: str | None = None,
    kernels: str | None = None,
    image: np.ndarray | None = None,
    data_dir: str | Path | None = None,
) -> Profile:
    """Runs one inference (the first test image of the build's dataset unless `image` is given: HWC uint8) on the
    board and returns its per-op profile."""
    from mcuformer.device.runner import check_hello

    build = Path(build_dir)
    manifest = read_manifest(build)
    model_file = load_model(BuildDir(build).model)
    _, graph = build_graph(model_file, manifest["name"], BuildDir(build).schedule(), BuildDir(build).variants())
    macs = graph_macs(graph)
    if image is None:  # at the model's input size, as eval feeds it
        size = (model_file.arch.image_size, model_file.arch.image_size)
        image = load_dataset(manifest["dataset"], "test", data_dir).resized(size).images[0]
    pixels = reference.quantize_pixels(image)
    from mcuformer.device.runner import device_session

    variant = kernels or load_board(board).kernels
    with device_session(build, board, port, kernels=kernels) as (link, _):
        hello = link.info or link.hello()
        check_hello(hello, manifest, link.name)
        result = link.infer(pixels)
        counts = link.profile().op_counts
    if len(counts) != len(graph.ops):
        raise McuformerError(f"the device reported {len(counts)} ops but the model has {len(graph.ops)}: the firmware "
                             f"on {link.name} is not this build's; rebuild and flash it")  # fmt: skip
    counter = hello.counter_kind.name.lower()
    ops = tuple(OpProfile(i, op.name, op.kind, m, int(c))
                for i, (op, m, c) in enumerate(zip(graph.ops, macs, counts, strict=True)))  # fmt: skip
    return Profile(manifest["name"], board, variant, counter, 40 if counter == "instructions" else 1, result.count,
                   ops)  # fmt: skip


def write_profile(profile: Profile, path: str | Path) -> Path:
    out = Path(path)
    out.write_text(json.dumps(profile.to_json(), indent=2) + "\n")
    return out
