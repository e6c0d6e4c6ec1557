"""Instructions per MAC of the portable C kernels vs the Cortex-M7 DSP kernels, on the emulated Cortex-M7.

    python benchmarks/kernel_speed.py [--out docs/kernels.md] [--models fmnist-small,fmnist-lowrank,cifar-p4-d64]
                                      [--work runs/kernel_speed]

Two parts, both on QEMU mps2-an500 (Cortex-M7) with `-icount shift=0`, where counts are instructions:
- single ops over a range of shapes (mcuformer.device.kernel_harness: both libraries in one bare-metal ELF, the
  same inputs, timed with SysTick; the harness also checks every DSP kernel against the portable one);
- whole models: each reference architecture trained briefly (1 epoch on 1024 images: the weights' values barely
  move instruction counts) on Fashion-MNIST, or for 3-channel architectures on Fashion-MNIST written as RGB
  PNGs into an image folder; compiled for qemu-m7, profiled per op (`mcuformer profile`) with each library.
- inside the fused blocks: the DSP MLP and per-head attention blocks at each full-rank model's block shape, traced
  on QEMU and counted per function (mcuformer.device.kernel_hotspots).
Latency on a 216 MHz STM32F746 is an estimate: instructions x 0.6..1.5 cycles per instruction (mcuformer.profile).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from mcuformer.arch import PRESETS, ArchConfig
from mcuformer.codegen.compiler import Budgets, compile_model
from mcuformer.data import load_dataset
from mcuformer.device.kernel_harness import BenchRow, build_harness, run_harness
from mcuformer.device.kernel_hotspots import BlockShape, profile_blocks
from mcuformer.profile import CPI_RANGE, M7_CLOCK_HZ, Profile, profile_build
from mcuformer.train import TrainConfig, train

MODELS = ("fmnist-small", "fmnist-lowrank", "cifar-p4-d64")
QUICK_TRAIN = TrainConfig(epochs=1, batch_size=64, lr=2e-3, warmup_epochs=0.2, train_limit=1024, calibration_images=256)
LINEAR_KINDS = ("linear", "mlp_block")  # the MLP block is LayerNorm + 2 linears + GELU + add


def rgb_folder(root: Path, size: int, per_split: int = 1024) -> Path:
    """Fashion-MNIST as size x size RGB PNGs in root/<split>/<class>/ (a 3-channel data set that ships offline)."""
    for split in ("train", "test"):
        data = load_dataset("fashion-mnist", split)
        for i in range(min(per_split, len(data.labels))):
            folder = root / split / f"{int(data.labels[i]):02d}"
            folder.mkdir(parents=True, exist_ok=True)
            grey = Image.fromarray(data.images[i, :, :, 0]).resize((size, size))
            rgb = np.stack([np.asarray(grey), np.asarray(grey)[::-1], np.asarray(grey)[:, ::-1]], axis=-1)
            Image.fromarray(rgb.astype(np.uint8)).save(folder / f"{i:05d}.png")
    return root


MEMORY_PLAN = Budgets(optimize="memory")


def build_model(name: str, work: Path) -> tuple[Path, Path | None]:
    """A compiled build of preset `name` for qemu-m7 (trained once, reused on the next run) and its data folder.
    The memory plan (`--optimize memory`): the kernels compared on the least-memory kernel variants, every weight
    int8 (benchmarks/plan_modes.py measures the speed plans)."""
    arch = PRESETS[name]
    run = work / name
    folder = None if arch.channels == 1 else work / f"rgb{arch.image_size}"
    if not (run / "model.pt").is_file():
        if folder is None:
            train(arch, "fashion-mnist", run, QUICK_TRAIN)
        else:
            train(arch, "imagefolder", run, QUICK_TRAIN, data_dir=rgb_folder(folder, arch.image_size))
    build = run / "build"
    compile_model(run / "model.pt", "qemu-m7", build, name=name.replace("-", "_"), budgets=MEMORY_PLAN)
    return build, folder


def kernel_table(rows: list[BenchRow]) -> list[str]:
    lines = [
        "| op | shape | MACs (elements) | portable instr/MAC | DSP instr/MAC | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r.op} | {r.shape} | {r.macs:,} | {r.portable_per_mac:.2f} | {r.variant_per_mac:.2f} | "
                     f"{r.portable_instructions / r.variant_instructions:.1f}x |")  # fmt: skip
    return lines


def _per_mac(p: Profile, kinds: tuple[str, ...]) -> float:
    macs = sum(op.macs for op in p.ops if op.kind in kinds)
    return sum(op.count for op in p.ops if op.kind in kinds) / macs if macs else float("nan")


def model_table(results: dict[str, dict[str, Profile]]) -> list[str]:
    lines = ["| model | MACs | portable instructions | portable instr/MAC | DSP instructions | DSP instr/MAC | "
             "DSP MLP-block instr/MAC | int8 floor instr/MAC | speed-up | DSP latency at 216 MHz (est.) |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, p in results.items():
        port, dsp = p["portable"], p["dsp"]
        low, high = dsp.latency_ms(M7_CLOCK_HZ)
        floor, floor_macs = int8_floor(name)
        if floor_macs != dsp.total_macs:
            raise SystemExit(f"{name}: the floor model counts {floor_macs:,} MACs, the profile {dsp.total_macs:,}")
        lines.append(f"| {name} | {dsp.total_macs:,} | {port.total:,} | {port.total / port.total_macs:.2f} | "
                     f"{dsp.total:,} | {dsp.total / dsp.total_macs:.2f} | {_per_mac(dsp, LINEAR_KINDS):.2f} | "
                     f"{floor / floor_macs:.2f} | {port.total / dsp.total:.1f}x | "
                     f"{low:.0f}-{high:.0f} ms |")  # fmt: skip
    return lines


def kind_table(name: str, p: dict[str, Profile]) -> list[str]:
    port, dsp = p["portable"], p["dsp"]
    lines = [f"**{name}** (share of the DSP model's instructions per op kind):", "",
             "| op kind | MACs | portable instr/MAC | DSP instr/MAC | DSP share |",
             "|---|---|---|---|---|"]  # fmt: skip
    port_kinds = port.by_kind()
    for kind, (macs, count) in sorted(dsp.by_kind().items(), key=lambda kv: -kv[1][1]):
        pm = f"{port_kinds[kind][1] / macs:.2f}" if macs else "-"
        dm = f"{count / macs:.2f}" if macs else "-"
        lines.append(f"| {kind} | {macs:,} | {pm} | {dm} | {100 * count / dsp.total:.1f}% |")
    return lines


# An idealised lower bound on the instructions of a model with int8 weights on ARMv7E-M (see docs/kernels.md, "Not
# reached"): per MAC 1/2 SMLAD (two MACs is the most one instruction does), 3/16 to load and split int8 weights (LDR
# and two SXTB16 per four weights, shared by the four tokens that fit the registers), 1/8 to load the activations
# (LDM of four int16-pair words); per output 4 to requantize and store (SMMLA, ASR, SSAT, STRB). Element-wise
# work at a floor below the kernels': softmax 4 per score, LayerNorm 5, GELU 2 and residual add 4 per element.
# No loop control, no per-channel state, no widening, LayerNorm once per block: real kernels cannot reach it.
FLOOR_PER_MAC = 0.5 + 3 / 16 + 1 / 8
# With the weights widened to int16 by codegen (the planner's speed mode): one LDRD per four weights and four tokens,
# 1/16 instead of 3/16 (the scores and the context still multiply by int8 activations, K and V).
FLOOR_PER_MAC_WIDENED = 0.5 + 1 / 16 + 1 / 8
FLOOR_PER_OUTPUT = 4
FLOOR_SOFTMAX, FLOOR_LAYERNORM, FLOOR_GELU, FLOOR_ADD = 4, 5, 2, 4


def int8_floor(name: str | ArchConfig, widened: bool = False) -> tuple[float, int]:
    """(instructions, MACs) of preset or architecture `name` at the idealised int8 floor (FLOOR_* above); `widened`:
    the fused blocks' linear weights widened to int16."""
    arch = PRESETS[name] if isinstance(name, str) else name
    n, d = arch.num_tokens, arch.embed_dim
    instructions, macs = 0.0, 0

    def linear(rows: int, fan_in: int, fan_out: int, rank: int | None = None, weights: bool = False) -> None:
        nonlocal instructions, macs
        per_mac = FLOOR_PER_MAC_WIDENED if widened and weights else FLOOR_PER_MAC
        for k, o in ((fan_in, rank), (rank, fan_out)) if rank else ((fan_in, fan_out),):
            assert k is not None and o is not None
            instructions += rows * o * (k * per_mac + FLOOR_PER_OUTPUT)
            macs += rows * o * k

    linear(arch.num_patches, arch.patch_dim, d)
    for layer in range(arch.depth):
        heads, hidden, ranks = arch.num_heads[layer], arch.mlp_hidden(layer), arch.ranks[layer]
        linear(n, d, 3 * d, ranks.get("qkv"), weights=True)
        linear(n * heads, d // heads, n)  # scores: per head, N x N outputs of head_dim MACs
        linear(n, n, d)  # context: N x d outputs of N MACs
        linear(n, d, d, ranks.get("proj"), weights=True)
        linear(n, d, hidden, ranks.get("fc1"), weights=True)
        linear(n, hidden, d, ranks.get("fc2"), weights=True)
        instructions += FLOOR_SOFTMAX * heads * n * n + 2 * n * d * (FLOOR_LAYERNORM + FLOOR_ADD)
        instructions += FLOOR_GELU * n * hidden
    linear(1, d, arch.num_classes)
    return instructions, macs


def hotspot_tables(work: Path, names: list[str]) -> list[str]:
    """Per-function tables of the DSP fused blocks at the block shapes of the full-rank models among names."""
    lines = [
        "",
        "## Inside the fused blocks (DSP, instructions per function)",
        "",
        "One call of each block on random full-rank weights; a function's row includes the instruction wrappers "
        "it inlines. MAC share: the SMLAD and SMLAxy instructions, the multiply-accumulate work itself.",
    ]
    shapes: dict[BlockShape, str] = {}
    for name in names:
        arch = PRESETS[name]
        if any(arch.ranks[0].get(linear) is not None for linear in ("qkv", "proj", "fc1", "fc2")):
            continue  # the profile build has full-rank layers only
        shape = BlockShape(arch.num_tokens, arch.embed_dim, arch.num_heads[0], arch.mlp_hidden(0))
        shapes.setdefault(shape, name)
    for shape, name in shapes.items():
        for phase in profile_blocks(shape, work / f"hotspots_{name}"):
            share = 100 * phase.mac_instructions / phase.total
            title = f"**{phase.kernel}, {name} ({shape.label})**: {phase.total:,} instructions"
            lines += ["", f"{title}, {phase.total / phase.macs:.2f} per MAC, MAC share {share:.0f}%", ""]
            lines += phase.table(limit=10)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="write the tables as markdown here (e.g. docs/kernels.md)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated presets ('' for none)")
    parser.add_argument("--work", default=None, help="folder for trained models and builds (default: a temp dir)")
    args = parser.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="kernel_speed_"))
    work.mkdir(parents=True, exist_ok=True)

    harness = run_harness(build_harness(work / "harness"))
    if harness.mismatches:
        raise SystemExit("DSP kernels differ from the portable kernels:\n" + "\n".join(harness.mismatches))
    lines = ["## Single ops (instructions per MAC; element-wise ops: per element)", "", *kernel_table(harness.bench)]
    results: dict[str, dict[str, Profile]] = {}
    for name in filter(None, args.models.split(",")):
        build, folder = build_model(name, work)
        results[name] = {k: profile_build(build, "qemu-m7", kernels=k, data_dir=folder) for k in ("portable", "dsp")}
        print(results[name]["dsp"].table(), flush=True)
    if results:
        lines += ["", "## Whole models (instructions per inference on the emulated Cortex-M7)", "",
                  *model_table(results), ""]  # fmt: skip
        for name, p in results.items():
            lines += [*kind_table(name, p), ""]
    lines += hotspot_tables(work, list(results) or list(MODELS))
    lines += ["", "int8 floor: an idealised lower bound for int8 weights on ARMv7E-M (int8_floor in "
              "benchmarks/kernel_speed.py; no loop control, per-channel state or widening)."]  # fmt: skip
    lines += ["", f"Latency: instructions x {CPI_RANGE[0]}..{CPI_RANGE[1]} cycles per instruction at "
              f"{M7_CLOCK_HZ / 1e6:.0f} MHz (an assumption about the real core; QEMU counts instructions "
              "only)."]  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        _write_section(Path(args.out), text)


BEGIN, END = "<!-- kernel_speed: begin -->", "<!-- kernel_speed: end -->"


def _write_section(path: Path, text: str) -> None:
    """Replace the generated section of path (between the markers) with text, keeping the hand-written rest."""
    old = path.read_text() if path.is_file() else f"{BEGIN}\n{END}\n"
    head, _, rest = old.partition(BEGIN)
    _, _, tail = rest.partition(END)
    path.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")


if __name__ == "__main__":
    main()


__all__ = ["build_model", "main"]
