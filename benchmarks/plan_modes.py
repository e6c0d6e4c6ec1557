"""Memory mode against speed mode (`compile --optimize`) on the emulated Cortex-M7, measured on the device.

Three plans per model: `memory`; `speed, int8` (the speed plan's attention kernels, every weight int8: what the
kernels alone give); `speed` (the same with the linears the flash budget holds widened to int16).

    python benchmarks/plan_modes.py [--models fmnist-small fmnist-lowrank cifar-p4-d64 runs/demo/model.pt]
        [--images 1000] [--work runs/plan_modes] [--doc docs/plan_modes.md] [--jobs 2]

Each model (a reference preset, trained as benchmarks/kernel_speed.py trains it, or a model.pt) is compiled for
qemu-m7 within the STM32F746's budgets in both modes and run on QEMU mps2-an500 (`-icount shift=0`: counts are
instructions) over the first --images test images: the logits must equal the numpy int8 reference bit for bit.
SRAM is measured on the device (arena + stack high-water mark + runtime statics), flash is the ELF's; latency on a
216 MHz STM32F746 is instructions x 0.6..1.5 cycles per instruction (mcuformer.profile.CPI_RANGE).
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kernel_speed import build_model

from mcuformer.boards import load_board
from mcuformer.codegen.compiler import Budgets, compile_model, plan_target
from mcuformer.codegen.lower import Variants
from mcuformer.codegen.ops import graph_macs
from mcuformer.device.build import build_firmware
from mcuformer.evaluate import evaluate_build
from mcuformer.profile import CPI_RANGE, M7_CLOCK_HZ

BOARD = "qemu-m7"  # the STM32F746's memory sizes, emulated


def plan_budgets(model: Path) -> dict[str, Budgets]:
    """The three plans' budgets: memory, the speed plan's kernels with int8 weights, speed."""
    speed_kernels = plan_target(model, load_board(BOARD))[0].chosen.attention
    return {"memory": Budgets(optimize="memory"), "speed, int8": Budgets(variants=Variants(speed_kernels)),
            "speed": Budgets()}  # fmt: skip


def measure(
    model: Path, data_dir: Path | None, mode: str, build: Path, images: int, budgets: Budgets
) -> dict[str, Any]:
    compiled = compile_model(model, BOARD, build, name="bench", budgets=budgets)
    firmware = build_firmware(build)
    result = evaluate_build(build, BOARD, None, images, data_dir)
    memory = result.memory
    assert memory is not None, "the firmware reports its memory"
    macs = sum(graph_macs(compiled.graph))
    return {
        "mode": mode,
        "attention": list(compiled.graph.meta["attention"]),
        "widened": len(compiled.graph.meta["widened"]),
        "promised_sram": compiled.report.sram_bytes,
        "device_sram": memory.measured_sram,
        "promised_flash": compiled.report.flash_bytes,
        "elf_flash": firmware.size.flash_bytes,
        "predicted": compiled.report.predicted_instructions,
        "instructions": result.mean_count,
        "per_mac": result.mean_count / macs,
        "images": result.images,
        "exact": result.logits_exact,
        "accuracy": result.device_accuracy,
    }


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    low, high = CPI_RANGE
    lines = [
        f"Regenerate: `{command}`",
        "",
        "| model | plan | attention per block | widened linears | SRAM on the device / promised | flash in the ELF "
        "/ promised | instructions (measured / predicted) | per MAC | ms at 216 MHz | logits exact |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        kinds = ", ".join(k.removeprefix("attention_block").lstrip("_") or "all heads" for k in r["attention"])
        ms = f"{1000 * r['instructions'] * low / M7_CLOCK_HZ:.1f}-{1000 * r['instructions'] * high / M7_CLOCK_HZ:.1f}"
        lines.append(
            f"| {r['model']} | {r['mode']} | {kinds} | {r['widened']} "
            f"| {r['device_sram']:,} / {r['promised_sram']:,} B "
            f"| {r['elf_flash']:,} / {r['promised_flash']:,} B | {r['instructions']:,.0f} / {r['predicted']:,} "
            f"| {r['per_mac']:.2f} | {ms} | {100 * r['exact']:.0f}% of {r['images']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["fmnist-small", "fmnist-lowrank", "cifar-p4-d64"])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--work", default="runs/plan_modes")
    parser.add_argument("--doc")
    parser.add_argument("--jobs", type=int, default=2, help="QEMU runs at a time")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    jobs = []
    for name in args.models:
        if name.endswith(".pt"):
            model, data_dir, label = Path(name), None, f"{Path(name).parent.name} ({name})"
        else:
            built, data_dir = build_model(name, work)
            model, label = built.parent / "model.pt", name
        for mode, budgets in plan_budgets(model).items():
            folder = work / f"{label.split()[0]}-{mode.replace(', ', '-')}"
            jobs.append((label, model, data_dir, mode, folder, budgets))
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(measure, *job[1:5], args.images, job[5]) for job in jobs]
        rows = [{"model": job[0], **f.result()} for job, f in zip(jobs, futures, strict=True)]
    table = markdown(rows, "python benchmarks/plan_modes.py " + " ".join(sys.argv[1:]))
    print(table)
    if args.doc:
        Path(args.doc).write_text(table)


if __name__ == "__main__":
    main()
