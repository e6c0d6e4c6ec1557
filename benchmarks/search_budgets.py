"""The searched ViT against random search and a hand-scaled ViT at operating points where a constraint binds (int8,
on the device).

    python benchmarks/search_budgets.py [--points stm32f746:latency=5ms stm32l432kc stm32l412kb]
        [--budgets 320KB 128KB 64KB] [--board stm32f746] [--preset full] [--out runs/bench]
        [--doc docs/search_budgets.md] [--device-images 200] [--reduced] [--retrain]

A point is a board with optional limits: `board[:sram=B][:flash=B][:latency=T]` (`--budgets` adds SRAM-budget
points on `--board`). Points that search the same space share one supernet (the one-shot promise: train once,
search many): it is trained under the loosest of them and reused by the others (`--supernet-from`).
For each point:
- `search`: `mcuformer search ... --finish-random`: the evolution's winner, finetuned and calibrated from inherited
  weights (model.pt);
- `random`: the best of as many random fitting architectures as the evolution evaluated, finished the same way;
- `hand-scaled`: the usual recipe without a search: a uniform ViT (28x28 input, 4x4 patches or 7x7 if none fits,
  MLP ratio 2, full rank, 4 heads) made as wide, then as deep, as the point's constraints allow (the same planner
  and cost model), trained from scratch for as many epochs as the searched model saw (supernet + finetune).
With `--retrain` the two winners are trained from scratch too (`search --retrain`: the training recipe for supernet
+ finish epochs), exactly as the hand-scaled ViT is: the rows then differ in the architecture alone.
Time: wall minutes of training on this machine (the search: supernet, search and the winner's finish; random
search: the same supernet and the random search, then its own finish; the hand-scaled ViT: its training).
Accuracy is the int8 reference's on the whole test set (the generated C and the device equal it bit for bit), and a
QEMU run of the compiled firmware on the point's emulated stand-in (its SRAM and flash), on the first
`--device-images` test images, checks that on the device and measures instructions against the cost model.
`--reduced` is the setting this repository's CPU-only machines can run: with `--preset full` every stage is
shortened (`REDUCED`); with any preset the hand-scaled ViT stays within the space's largest width and depth.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcuformer.arch import ArchConfig
from mcuformer.boards import EMULATOR_BOARD, load_board
from mcuformer.checkpoint import load_model
from mcuformer.search.cost import Constraints
from mcuformer.search.finish import int8_accuracy
from mcuformer.search.run import SearchConfig, resolve_preset, run_search
from mcuformer.search.space import load_space
from mcuformer.train import TrainConfig, load_for_arch, train

HAND_WIDTHS = (256, 192, 160, 128, 96, 64, 48, 32)
HAND_DEPTHS = (12, 10, 8, 7, 6, 5, 4, 3, 2)
HAND_PATCHES = (4, 7)
# What --reduced changes in the preset (CPU only: every stage shortened, the space and the method unchanged).
REDUCED = {
    "supernet.epochs": 3,
    "supernet.batch_size": 128,
    "supernet.num_random": 1,
    "train_limit": 12_000,
    "val_size": 2_000,
    "evolution.population": 12,
    "evolution.generations": 4,
    "evolution.parents": 4,
    "finetune.epochs": 3,
}


def hand_scaled(
    constraints: Constraints, channels: int, classes: int, max_width: int | None = None, max_depth: int | None = None
) -> ArchConfig:
    """The widest, then deepest, uniform ViT that fits (width first: the usual way to scale a small ViT), with 4x4
    patches, or 7x7 ones when no 4x4 model fits (fewer tokens: what a person does for a latency limit)."""
    for patch in HAND_PATCHES:
        for width in [w for w in HAND_WIDTHS if max_width is None or w <= max_width]:
            for depth in [d for d in HAND_DEPTHS if max_depth is None or d <= max_depth]:
                arch = ArchConfig.uniform(image_size=28, channels=channels, patch_size=patch, embed_dim=width,
                                          depth=depth, num_heads=4, mlp_ratio=2, num_classes=classes,
                                          name="hand-scaled")  # fmt: skip
                if constraints.fits(arch):
                    return arch
    raise SystemExit("no hand-scaled ViT fits")


def int8_test_accuracy(model_path: Path, dataset: str) -> float:
    model_file = load_model(model_path)
    test = load_for_arch(dataset, "test", model_file.arch, None, model_file.dataset.classes)
    return int8_accuracy(model_file.model, model_file.calibration, test)


@dataclass(frozen=True)
class Point:
    """An operating point: a board and the limits the search gets there."""

    board: str
    sram: str | None = None
    flash: str | None = None
    latency: str | None = None
    folder: str = ""  # under --out (budget-<sram> for --budgets points, as before)

    @classmethod
    def parse(cls, text: str) -> Point:
        board, *limits = text.split(":")
        fields = dict(limit.split("=", 1) for limit in limits)
        unknown = set(fields) - {"sram", "flash", "latency"}
        if unknown:
            raise SystemExit(f"point {text!r}: unknown limit(s) {sorted(unknown)}; use sram=, flash=, latency=")
        return cls(board, fields.get("sram"), fields.get("flash"), fields.get("latency"),
                   text.replace(":", "-").replace("=", "-").lower())  # fmt: skip

    @property
    def label(self) -> str:
        limits = [f"{k} {v}" for k, v in (("SRAM", self.sram), ("flash", self.flash), ("latency", self.latency)) if v]
        return self.board + (f" ({', '.join(limits)})" if limits else "")

    def constraints(self) -> Constraints:
        return Constraints.for_board(self.board, self.sram, self.flash, latency=self.latency)

    def binding(self, cost: dict[str, Any]) -> str:
        """The constraint closest to its limit for a model's costs (its share of the limit)."""
        c = self.constraints()
        shares = {"SRAM": cost["sram_bytes"] / c.sram_budget, "flash": cost["flash_bytes"] / c.flash_budget}
        if c.max_instructions:
            shares["latency"] = cost["instructions"] / c.max_instructions
        name = max(shares, key=lambda k: shares[k])
        return f"{name} {100 * shares[name]:.0f}%"


def device_check(model_path: Path, point: Point, images: int, dataset: str) -> dict[str, Any]:
    from mcuformer.codegen.compiler import compile_model
    from mcuformer.evaluate import evaluate_build

    board = load_board(point.board)
    build = model_path.parent / "build"
    compiled = compile_model(model_path, board, build, name="bench")
    report = compiled.report
    row = {"sram_bytes": report.sram_bytes, "flash_bytes": report.flash_bytes,
           "instructions": report.predicted_instructions or 0,
           "ms": None if report.predicted_ms is None else round(report.predicted_ms, 2)}  # fmt: skip
    if images <= 0:
        return row
    result = evaluate_build(build, board.emulator or EMULATOR_BOARD, dataset, images)
    return {**row, "device_images": images, "device_accuracy": result.device_accuracy,
            "logits_exact": result.logits_exact, "measured_instructions": result.mean_count}  # fmt: skip


def run_point(point: Point, args: argparse.Namespace, supernet_from: Path | None) -> dict[str, Any]:
    out = Path(args.out) / point.folder
    overrides = dict(REDUCED) if args.reduced and args.preset == "full" else {}
    config = SearchConfig(out=out, sram_budget=point.sram, flash_budget=point.flash, latency=point.latency,
                          board=point.board, dataset=args.dataset, preset=args.preset, seed=args.seed,
                          device=args.device, finish_random=True, overrides=overrides,
                          supernet_from=str(supernet_from) if supernet_from else None,
                          retrain=args.retrain)  # fmt: skip
    preset = resolve_preset(config)
    row: dict[str, Any] = {"point": point.label, "budget": point.sram or "", "folder": point.folder}

    # The baseline first (it does not depend on the search): trained from scratch for as many epochs as the
    # searched model saw. --reduced keeps it inside the space's bounds (width, depth), so it trains on a CPU.
    constraints = point.constraints()
    channels = 1 if args.dataset == "fashion-mnist" else 3
    if args.reduced:
        space = load_space(point.board, args.preset)
        arch = hand_scaled(constraints, channels, 10, max(space.embed_dims), max(space.depths))
    else:
        arch = hand_scaled(constraints, channels, 10)
    epochs = preset.finetune.epochs if args.retrain else preset.supernet.epochs + preset.finetune.epochs
    hand_out = out / "hand-scaled"
    hand = train(arch, args.dataset, hand_out, TrainConfig(epochs=epochs, train_limit=preset.train_limit,
                                                           seed=args.seed, device=args.device))  # fmt: skip
    # Training seconds as recorded per epoch (a resumed or already finished run reports its real cost).
    row["hand_scaled"] = {"arch": arch.to_dict(), "epochs": epochs, "seconds": hand.metrics["train_seconds"],
                          "int8_accuracy": int8_test_accuracy(hand_out / "model.pt", args.dataset)}  # fmt: skip
    row["hand_scaled"].update(device_check(hand_out / "model.pt", point, args.device_images, args.dataset))

    result = run_search(config, resume=True)
    # As recorded by the run: search + finish (the random winner's finish is the benchmark's, not the search's).
    # A shared supernet's training counts once, at the point that trained it.
    row["search_seconds"] = sum(v for k, v in result["seconds"].items() if k != "random_finish")
    spent = result["seconds"]
    row["search"] = {"arch": result["winner"]["arch"], "int8_accuracy": result["final"]["int8_accuracy"],
                     "val_accuracy_inherited": result["winner"]["accuracy"],
                     "seconds": row["search_seconds"]}  # fmt: skip
    random_seconds = row["search_seconds"] - spent.get("evolution", 0) - spent.get("finetune", 0)
    row["random"] = {"arch": result["random_best"]["arch"], "int8_accuracy": result["random_final"]["int8_accuracy"],
                     "val_accuracy_inherited": result["random_best"]["accuracy"],
                     "seconds": random_seconds + spent.get("random_finish", 0)}  # fmt: skip
    row["search"].update(device_check(out / "model.pt", point, args.device_images, args.dataset))
    row["random"].update(device_check(out / "random" / "model.pt", point, args.device_images, args.dataset))
    for key in ("search", "random", "hand_scaled"):
        row[key]["binding"] = point.binding(row[key])
    return row


def looseness(point: Point) -> tuple[float, float, float]:
    """Larger for looser limits: the point of a space whose supernet serves the others."""
    c = point.constraints()
    return (c.sram_budget, c.flash_budget, c.max_instructions or float("inf"))


def describe(arch: dict[str, Any]) -> str:
    ranks = {r for layer in arch["ranks"] for r in layer.values()}
    low = "full rank" if ranks == {"full"} else "low-rank " + "/".join(sorted(str(r) for r in ranks if r != "full"))
    return (f"{arch['image_size']}px p{arch['patch_size']} d{arch['embed_dim']} L{arch['depth']} "
            f"h{max(arch['num_heads'])} m{max(arch['mlp_ratios']):g} {low}")  # fmt: skip


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    lines = [
        "| point | method | int8 test accuracy | on device (QEMU, first N) | binding | peak SRAM | flash "
        "| instructions (predicted / measured) | architecture | time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for key, label in (("search", "search (evolution)"), ("random", "random search"),
                           ("hand_scaled", "hand-scaled ViT")):  # fmt: skip
            r = row[key]
            device = (f"{100 * r['device_accuracy']:.1f}% of {r['device_images']}, exact {100 * r['logits_exact']:.0f}%"
                      if "device_accuracy" in r else "-")  # fmt: skip
            measured = f"{r['measured_instructions']:,.0f}" if "measured_instructions" in r else "-"
            ms = f" ({r['ms']:.1f} ms)" if r.get("ms") is not None else ""
            minutes = f"{r['seconds'] / 60:.0f} min" if "seconds" in r else "-"
            work = f"{r.get('instructions', 0):,}{ms} / {measured}"
            lines.append(f"| {row['point']} | {label} | {100 * r['int8_accuracy']:.2f}% | {device} | "
                         f"{r.get('binding', '-')} | {r['sram_bytes']:,} B | {r['flash_bytes']:,} B | {work} | "
                         f"{describe(r['arch'])} | {minutes} |")  # fmt: skip
    return "\n".join([f"Regenerate: `{command}`", "", *lines]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", nargs="+", default=[], help="board[:sram=B][:flash=B][:latency=T] ...")
    parser.add_argument("--budgets", nargs="+", default=[], help="SRAM budgets on --board (points of their own)")
    parser.add_argument("--preset", default="full")
    parser.add_argument("--board", default="stm32f746")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench")
    parser.add_argument("--doc", help="write the results table to this markdown file")
    parser.add_argument("--device-images", type=int, default=200, help="test images run on QEMU per model")
    parser.add_argument("--reduced", action="store_true", help="the CPU setting: every stage shortened")
    parser.add_argument("--retrain", action="store_true", help="the winners train from scratch like the hand-scaled "
                        "ViT (search --retrain): the comparison then measures the architectures alone")  # fmt: skip
    args = parser.parse_args()
    points = [Point.parse(p) for p in args.points]
    points += [Point(args.board, sram=b, folder=f"budget-{b.lower()}") for b in args.budgets]
    if not points:
        raise SystemExit("name the operating points: --points and/or --budgets")
    command = "python benchmarks/search_budgets.py " + " ".join(sys.argv[1:])
    # One supernet per space: the loosest point of each space trains it, the others reuse it.
    trainer: dict[tuple[str, str], Point] = {}
    for point in sorted(points, key=looseness, reverse=True):
        trainer.setdefault((repr(load_space(point.board, args.preset)), args.preset), point)
    rows = []
    for point in sorted(points, key=lambda p: trainer[(repr(load_space(p.board, args.preset)), args.preset)] != p):
        source = trainer[(repr(load_space(point.board, args.preset)), args.preset)]
        rows.append(run_point(point, args, None if source == point else Path(args.out) / source.folder))
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
        print(markdown(rows, command))
    if args.doc:
        Path(args.doc).write_text(markdown(rows, command))


if __name__ == "__main__":
    main()
