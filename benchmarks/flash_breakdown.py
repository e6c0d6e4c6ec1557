"""Where a model's flash goes, measured in the linked firmware: weights, and everything that is not weights (code,
requantization parameters, biases, LayerNorm parameters, tables, the op structs and the runtime's constants).

    python benchmarks/flash_breakdown.py [MODEL.pt | PRESET ...] [--board qemu-m7] [--work runs/kernel_speed]
        [--doc docs/flash.md]

A preset (fmnist-small, fmnist-lowrank, cifar-p4-d64) is the model benchmarks/kernel_speed.py trains in `--work`
(trained there first when missing). Each model is compiled for `--board` with the memory plan (`--optimize memory`,
what a tight flash budget gets: int8 weights; speed mode may widen them, see benchmarks/plan_modes.py) and its
firmware linked; flash is the ELF's (.text + .rodata + .data load image). The constants come from the graph (their
exact bytes per kind: the memory report's `flash_by_kind`, read from the build), code is .text, and `other` is the
rest of .rodata (op structs, runtime tables).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kernel_speed import MEMORY_PLAN, build_model

from mcuformer.arch import PRESETS
from mcuformer.boards import EMULATOR_BOARD
from mcuformer.codegen.build_dir import BuildDir
from mcuformer.codegen.compiler import compile_model
from mcuformer.device.build import build_firmware

DEFAULT_MODELS = ("fmnist-small", "fmnist-lowrank", "cifar-p4-d64")
CONST_KINDS = ("requant", "biases", "norm", "tables")


def build_of(model: str, work: Path, board: str) -> Path:
    if model in PRESETS:
        return build_model(model, work)[0]
    path = Path(model)
    build = work / "flash" / path.parent.name
    compile_model(path, board, build, name=path.parent.name.replace("-", "_") or "model", budgets=MEMORY_PLAN)
    return build


def breakdown(build: Path, board: str) -> dict[str, int]:
    consts: dict[str, int] = json.loads(BuildDir(build).memory_report.read_text())["flash_by_kind"]  # compile's
    size = build_firmware(build, board).size
    row = {"flash": size.flash_bytes, "code": size.sections.get(".text", 0)}
    row["weights"] = consts.get("weights", 0) + consts.get("embeddings", 0)
    row.update({kind: consts.get(kind, 0) for kind in CONST_KINDS})
    row["other"] = row["flash"] - row["code"] - sum(consts.values())
    row["non-weight"] = row["flash"] - row["weights"]
    return row


def table(rows: dict[str, dict[str, int]]) -> str:
    columns = ("flash", "weights", "non-weight", "code", *CONST_KINDS, "other")
    lines = ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:,}" for c in columns) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=list(DEFAULT_MODELS))
    parser.add_argument("--board", default=EMULATOR_BOARD)
    parser.add_argument("--work", default="runs/kernel_speed")
    parser.add_argument("--doc", help="write the table to this markdown file")
    args = parser.parse_args()
    work = Path(args.work)
    rows = {}
    for model in args.models:
        name = model if model in PRESETS else Path(model).parent.name
        rows[name] = breakdown(build_of(model, work, args.board), args.board)
        print(f"{name}: {rows[name]}", flush=True)
    text = f"Flash in bytes on {args.board} (`python benchmarks/flash_breakdown.py {' '.join(args.models)}`):\n\n"
    text += table(rows) + "\n"
    print(text)
    if args.doc:
        Path(args.doc).write_text(text)


if __name__ == "__main__":
    main()
