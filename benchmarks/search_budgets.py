"""The searched ViT against random search and a hand-scaled ViT at several SRAM budgets (int8, on the device).

    python benchmarks/search_budgets.py [--budgets 320KB 128KB 64KB] [--preset full] [--out runs/bench]
        [--doc docs/search_budgets.md] [--device-images 200] [--reduced]

For each budget:
- `search`: `mcuformer search --budget B --preset P --finish-random`: the evolution's winner, finetuned and
  calibrated from inherited weights (model.pt);
- `random`: the best of as many random fitting architectures as the evolution evaluated, finished the same way;
- `hand-scaled`: the usual recipe without a search: a uniform ViT (28x28 input, 4x4 patches, MLP ratio 2, full rank,
  4 heads) made as wide, then as deep, as the budget allows (planner-checked, same SRAM and flash limits), trained
  from scratch for as many epochs as the searched model saw (supernet + finetune).
Time: wall minutes of training on this machine (the search: supernet, search and the winner's finish; random
search: the same supernet and the random search, then its own finish; the hand-scaled ViT: its training).
Accuracy is the int8 reference's on the whole test set (the generated C and the device equal it bit for bit), and a
QEMU Cortex-M7 run of the compiled firmware on the first `--device-images` test images checks that on the device.
`--reduced` is the setting this repository's CPU-only machines can run: with `--preset full` every stage is
shortened (`REDUCED`); with any preset the hand-scaled ViT stays within the space's largest width and depth.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mcuformer.arch import ArchConfig
from mcuformer.checkpoint import load_model
from mcuformer.search.cost import Constraints, parse_size
from mcuformer.search.finish import int8_accuracy
from mcuformer.search.run import SearchConfig, resolve_preset, run_search
from mcuformer.search.space import load_space
from mcuformer.train import TrainConfig, load_for_arch, train

HAND_WIDTHS = (256, 192, 160, 128, 96, 64, 48, 32)
HAND_DEPTHS = (12, 10, 8, 7, 6, 5, 4, 3, 2)
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
    """The widest, then deepest, uniform ViT that fits (width first: the usual way to scale a small ViT)."""
    for width in [w for w in HAND_WIDTHS if max_width is None or w <= max_width]:
        for depth in [d for d in HAND_DEPTHS if max_depth is None or d <= max_depth]:
            arch = ArchConfig.uniform(image_size=28, channels=channels, patch_size=4, embed_dim=width, depth=depth,
                                      num_heads=4, mlp_ratio=2, num_classes=classes, name="hand-scaled")  # fmt: skip
            if constraints.fits(arch):
                return arch
    raise SystemExit("no hand-scaled ViT fits")


def int8_test_accuracy(model_path: Path, dataset: str) -> float:
    model_file = load_model(model_path)
    test = load_for_arch(dataset, "test", model_file.arch, None, model_file.dataset.classes)
    return int8_accuracy(model_file.model, model_file.calibration, test)


def device_check(model_path: Path, board: str, images: int, dataset: str) -> dict[str, Any]:
    from mcuformer.codegen.compiler import compile_model
    from mcuformer.evaluate import evaluate_build

    build = model_path.parent / "build"
    compiled = compile_model(model_path, board, build, name="bench")
    if images <= 0:
        return {"sram_bytes": compiled.report.sram_bytes, "flash_bytes": compiled.report.flash_bytes}
    result = evaluate_build(build, "qemu-m7", dataset, images)
    return {
        "sram_bytes": compiled.report.sram_bytes,
        "flash_bytes": compiled.report.flash_bytes,
        "device_images": images,
        "device_accuracy": result.device_accuracy,
        "logits_exact": result.logits_exact,
        "instructions": result.mean_count,
    }


def run_budget(budget: str, args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out) / f"budget-{budget.lower()}"
    overrides = dict(REDUCED) if args.reduced and args.preset == "full" else {}
    config = SearchConfig(out=out, sram_budget=budget, board=args.board, dataset=args.dataset, preset=args.preset,
                          seed=args.seed, device=args.device, finish_random=True, overrides=overrides)  # fmt: skip
    preset = resolve_preset(config)
    row: dict[str, Any] = {"budget": budget, "budget_bytes": parse_size(budget)}

    # The baseline first (it does not depend on the search): trained from scratch for as many epochs as the
    # searched model saw. --reduced keeps it inside the space's bounds (width, depth), so it trains on a CPU.
    constraints = Constraints.for_board(args.board, budget)
    channels = 1 if args.dataset == "fashion-mnist" else 3
    if args.reduced:
        space = load_space(args.board, args.preset)
        arch = hand_scaled(constraints, channels, 10, max(space.embed_dims), max(space.depths))
    else:
        arch = hand_scaled(constraints, channels, 10)
    epochs = preset.supernet.epochs + preset.finetune.epochs
    hand_out = out / "hand-scaled"
    hand = train(arch, args.dataset, hand_out, TrainConfig(epochs=epochs, train_limit=preset.train_limit,
                                                           seed=args.seed, device=args.device))  # fmt: skip
    # Training seconds as recorded per epoch (a resumed or already finished run reports its real cost).
    row["hand_scaled"] = {"arch": arch.to_dict(), "epochs": epochs, "seconds": hand.metrics["train_seconds"],
                          "int8_accuracy": int8_test_accuracy(hand_out / "model.pt", args.dataset)}  # fmt: skip
    row["hand_scaled"].update(device_check(hand_out / "model.pt", args.board, args.device_images, args.dataset))

    result = run_search(config, resume=True)
    # As recorded by the run: search + finish (the random winner's finish is the benchmark's, not the search's).
    row["search_seconds"] = sum(v for k, v in result["seconds"].items() if k != "random_finish")
    spent = result["seconds"]
    row["search"] = {"arch": result["winner"]["arch"], "int8_accuracy": result["final"]["int8_accuracy"],
                     "val_accuracy_inherited": result["winner"]["accuracy"],
                     "seconds": row["search_seconds"]}  # fmt: skip
    random_seconds = row["search_seconds"] - spent.get("evolution", 0) - spent.get("finetune", 0)
    row["random"] = {"arch": result["random_best"]["arch"], "int8_accuracy": result["random_final"]["int8_accuracy"],
                     "val_accuracy_inherited": result["random_best"]["accuracy"],
                     "seconds": random_seconds + spent.get("random_finish", 0)}  # fmt: skip
    row["search"].update(device_check(out / "model.pt", args.board, args.device_images, args.dataset))
    row["random"].update(device_check(out / "random" / "model.pt", args.board, args.device_images, args.dataset))
    return row


def describe(arch: dict[str, Any]) -> str:
    ranks = {r for layer in arch["ranks"] for r in layer.values()}
    low = "full rank" if ranks == {"full"} else "low-rank " + "/".join(sorted(str(r) for r in ranks if r != "full"))
    return (f"{arch['image_size']}px p{arch['patch_size']} d{arch['embed_dim']} L{arch['depth']} "
            f"h{max(arch['num_heads'])} m{max(arch['mlp_ratios']):g} {low}")  # fmt: skip


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    command = "python benchmarks/search_budgets.py " + " ".join(
        [f"--budgets {' '.join(args.budgets)}", f"--preset {args.preset}", f"--device-images {args.device_images}"]
        + (["--reduced"] if args.reduced else [])
    )
    lines = [
        "| budget | method | int8 test accuracy | on device (QEMU, first N) | peak SRAM | flash | architecture "
        "| time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for key, label in (("search", "search (evolution)"), ("random", "random search"),
                           ("hand_scaled", "hand-scaled ViT")):  # fmt: skip
            r = row[key]
            device = (f"{100 * r['device_accuracy']:.1f}% of {r['device_images']}, exact {100 * r['logits_exact']:.0f}%"
                      if "device_accuracy" in r else "-")  # fmt: skip
            minutes = f"{r['seconds'] / 60:.0f} min" if "seconds" in r else "-"
            lines.append(f"| {row['budget']} | {label} | {100 * r['int8_accuracy']:.2f}% | {device} | "
                         f"{r['sram_bytes']:,} B | {r['flash_bytes']:,} B | {describe(r['arch'])} "
                         f"| {minutes} |")  # fmt: skip
    return "\n".join([f"Regenerate: `{command}`", "", *lines]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", nargs="+", default=["320KB", "128KB", "64KB"])
    parser.add_argument("--preset", default="full")
    parser.add_argument("--board", default="stm32f746")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench")
    parser.add_argument("--doc", help="write the results table to this markdown file")
    parser.add_argument("--device-images", type=int, default=200, help="test images run on QEMU per model")
    parser.add_argument("--reduced", action="store_true", help="the CPU setting: every stage shortened")
    args = parser.parse_args()
    rows = []
    for budget in args.budgets:
        rows.append(run_budget(budget, args))
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
        print(markdown(rows, args))
    if args.doc:
        Path(args.doc).write_text(markdown(rows, args))


if __name__ == "__main__":
    main()
