"""Calibrates the instruction cost model (codegen/cost_model.json) on the emulated Cortex-M7 and reports its error.

    python benchmarks/calibrate_cost.py [--work runs/cost_model] [--archs 28] [--seed 0] [--doc docs/cost_model.md]

A spread of architectures (the reference models and random members of the stm32f746 search spaces: 4x4 and 7x7
patches, 16 to 96 wide, 1 to 6 deep, low rank or not, class token or mean pool) gets a randomly initialised ViT,
calibrated on 64 Fashion-MNIST training images (instruction counts depend on shapes, barely on weight values),
compiled for qemu-m7 (every one fused, every third also layer by layer and streamed, every other also with the
attention kernel that normalises once in every block) and profiled once per
kernel variant (`mcuformer profile`: per-op instructions under
`-icount`, resolution 40). Each op kind's coefficients are fitted on every op of every model
(`cost_model.fit_kind`). Every fourth model is held out of a first fit and predicted from the rest: that error is
what to expect on architectures the model has not seen. The final fit uses all models. Profiles are kept in
--work, so a rerun (or a resumed one after a kill) only profiles what is missing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
from pathlib import Path

import torch

from mcuformer.arch import PRESETS, ArchConfig, LayerRanks
from mcuformer.checkpoint import DatasetMeta, ModelFile, load_model, save_model
from mcuformer.codegen.compiler import Budgets, compile_model, graph_for_arch
from mcuformer.codegen.cost_model import MODEL_FILE, CostModel, fit_kind, op_features
from mcuformer.codegen.lower import Variants
from mcuformer.data import load_dataset, pixels_to_tensor
from mcuformer.model import VisionTransformer
from mcuformer.profile import profile_build
from mcuformer.progress import progress
from mcuformer.quant.ptq import calibrate
from mcuformer.search.genome import extreme_genome, random_genome
from mcuformer.search.space import load_space, space_from_dict

VARIANTS = ("dsp", "portable")
BOARD = "qemu-m7"
# Every architecture is profiled as compiled by default (fused); every third also layer by layer and streamed, so
# the kinds only those schedules emit (attention, multi-row linears, GELU tables, streamed patch rows) are covered.
EXTRA_SCHEDULES = ("layer", "stream")
# Builds whose every block runs the attention kernel that normalises once (the speed plan's option; the default
# memory plan never picks it), on every other architecture: label -> (schedule, attention kind).
ONCE = "fused-once"
LOWERINGS: dict[str, tuple[str, str | None]] = {
    "fused": ("fused", None), "layer": ("layer", None), "stream": ("stream", None),
    ONCE: ("fused", "attention_block_heads_once"),
}  # fmt: skip
# Short sequences (fewer than 16 tokens), where the fused DSP blocks take their one-token path: small images, large
# patches (tiny models and the small boards' spaces).
SHORT = space_from_dict({"image_sizes": [14, 28], "patch_sizes": [7, 14], "embed_dims": [16, 32, 48],
                         "depths": [1, 2, 3], "num_heads": [1, 2, 4], "mlp_ratios": [1.0, 2.0],
                         "ranks": [8, "full"], "pool": "mean"}, "short sequences")  # fmt: skip


def spread(count: int, seed: int) -> list[ArchConfig]:
    """Reference models, the spaces' extremes, then random members until `count`."""
    archs = [PRESETS[name] for name in ("micro", "fmnist-small", "fmnist-lowrank")]
    # Short sequences with K and V per head (the planner's choice for these): that path of the DSP block.
    archs += [ArchConfig.uniform(image_size=14, channels=1, patch_size=7, embed_dim=d, depth=2, num_heads=4,
                                 mlp_ratio=2, num_classes=10, pool="mean", rank=rank)
              for d, rank in ((32, LayerRanks(qkv=8, proj=8, fc1=8, fc2=8)), (48, LayerRanks()))]  # fmt: skip
    spaces = [load_space("stm32f746", preset) for preset in ("quick", "standard")] + [SHORT]
    for space in spaces:
        archs += [extreme_genome(space, largest).arch(space) for largest in (False, True)]
    rng = random.Random(seed)
    while len(archs) < count:
        space = spaces[len(archs) % len(spaces)]
        arch = random_genome(space, rng).arch(space)
        if rng.random() < 0.3:  # the spaces mean-pool; the class-token path runs other ops
            arch = dataclasses.replace(arch, pool="cls")
        if arch not in archs:
            archs.append(arch)
    return archs


def profile_build_counts(index: int, arch: ArchConfig, label: str, work: Path) -> dict[str, list[float]]:
    """Per variant: the measured instructions of every op of the architecture compiled as `label` says
    (LOWERINGS: a schedule, the memory plan or one attention kind), in op order. Cached in
    work/arch<index>-<label>.json (counts only: features are recomputed from the graph, so a change of features
    needs no new runs)."""
    schedule, attention = LOWERINGS[label]
    cache = work / f"arch{index:02d}-{label}.json"
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached["arch"] == arch.to_dict():
            return cached["counts"]
    folder = work / f"arch{index:02d}"
    if not (folder / "model.pt").is_file() or load_model(folder / "model.pt").arch != arch:
        train = load_dataset("fashion-mnist", "train").resized((arch.image_size, arch.image_size))
        torch.manual_seed(index)
        model = VisionTransformer(arch, train.mean, train.std).eval()
        meta = DatasetMeta("fashion-mnist", tuple(train.mean), tuple(train.std), tuple(train.classes))
        folder.mkdir(parents=True, exist_ok=True)
        save_model(ModelFile(model, calibrate(model, pixels_to_tensor(train.images[:64])), meta), folder / "model.pt")
    build = folder / f"build-{label}"
    compile_model(folder / "model.pt", BOARD, build, name=f"arch{index:02d}", enforce_budget=False, schedule=schedule,
                  budgets=Budgets(optimize="memory", variants=Variants(attention)))  # fmt: skip
    image = load_dataset("fashion-mnist", "test").resized((arch.image_size, arch.image_size)).images[0]
    counts = {v: [float(op.count) for op in profile_build(build, BOARD, kernels=v, image=image).ops]
              for v in VARIANTS}  # fmt: skip
    cache.write_text(json.dumps({"arch": arch.to_dict(), "counts": counts}) + "\n")
    return counts


def op_rows(arch: ArchConfig, label: str, counts: list[float]) -> list[dict[str, float]]:
    """Each op's kind, features and measured count (the graph without weights has the compiled model's ops)."""
    schedule, attention = LOWERINGS[label]
    graph = graph_for_arch(arch, schedule=schedule, variants=Variants(attention))
    if len(graph.ops) != len(counts):
        raise SystemExit(f"{arch.name}: {len(counts)} profiled ops but {len(graph.ops)} in the graph: delete --work")
    return [{"kind": op.kind, "count": count, **op_features(graph, op)}  # type: ignore[dict-item]
            for op, count in zip(graph.ops, counts, strict=True)]  # fmt: skip


def fit(models: list[list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    by_kind: dict[str, tuple[list[dict[str, float]], list[float]]] = {}
    for ops in models:
        for op in ops:
            features = {k: v for k, v in op.items() if k not in ("kind", "count")}
            rows, counts = by_kind.setdefault(str(op["kind"]), ([], []))
            rows.append(features)
            counts.append(float(op["count"]))
    return {kind: fit_kind(rows, counts) for kind, (rows, counts) in sorted(by_kind.items())}


def predicted(model: CostModel, ops: list[dict[str, float]]) -> float:
    total = 0.0
    for op in ops:
        weights = model.coefficients.get(str(op["kind"]), {})
        total += sum(weights.get(k, 0.0) * v for k, v in op.items() if k not in ("kind", "count"))
    return total


def features_seen(models: list[list[dict[str, float]]]) -> dict[str, set[str]]:
    """Per op kind, the features the builds exercise."""
    seen: dict[str, set[str]] = {}
    for ops in models:
        for op in ops:
            seen.setdefault(str(op["kind"]), set()).update(k for k in op if k not in ("kind", "count"))
    return seen


def covered(seen: dict[str, set[str]], ops: list[dict[str, float]]) -> bool:
    return all(set(op) - {"kind", "count"} <= seen.get(str(op["kind"]), set()) for op in ops)


def relative_errors(model: CostModel, models: list[list[dict[str, float]]]) -> list[float]:
    """|predicted / measured - 1| of each model's whole inference."""
    return [abs(predicted(model, ops) / sum(op["count"] for op in ops) - 1) for ops in models]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="runs/cost_model")
    parser.add_argument("--archs", type=int, default=28)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--doc", help="write the error table to this markdown file")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    archs = spread(args.archs, args.seed)
    builds = [(i, arch, "fused") for i, arch in enumerate(archs)]
    builds += [(i, arch, schedule) for i, arch in enumerate(archs) if i % 3 == 0 for schedule in EXTRA_SCHEDULES]
    builds += [(i, arch, ONCE) for i, arch in enumerate(archs) if i % 2 == 0]
    profiles = [profile_build_counts(i, arch, schedule, work)
                for i, arch, schedule in progress(builds, desc="profiling", unit="build")]  # fmt: skip

    command = " ".join(["python benchmarks/calibrate_cost.py", *sys.argv[1:]])
    result: dict[str, object] = {"command": command, "board": BOARD, "archs": [a.to_dict() for a in archs],
                                 "variants": {}}  # fmt: skip
    header = "| variant | builds | held out (covered) | held-out error (mean / max) | fit error on all (mean / max) |"
    lines = [f"Regenerate: `{command}`", "", header, "|---|---|---|---|---|"]
    for variant in VARIANTS:
        models = [op_rows(arch, schedule, p[variant]) for (_, arch, schedule), p in zip(builds, profiles, strict=True)]
        # Every fourth build is predicted by a fit on the others; one with a size those never exercised is left
        # out of that estimate (the model would refuse it: CostModel.covers), and counted.
        training = [m for i, m in enumerate(models) if i % 4 != 3]
        first, first_seen = fit(training), features_seen(training)
        held_out = [i for i in range(len(models)) if i % 4 == 3 and covered(first_seen, models[i])]
        uncovered = sum(1 for i in range(len(models)) if i % 4 == 3) - len(held_out)
        held = relative_errors(CostModel(variant, first, {}), [models[i] for i in held_out])
        final = CostModel(variant, fit(models), {})
        every = relative_errors(final, models)
        seen = features_seen(models)
        result["variants"][variant] = {  # type: ignore[index]
            "coefficients": final.coefficients,
            "calibrated_features": {kind: sorted(names) for kind, names in sorted(seen.items())},
            "held_out_error": {
                "mean": sum(held) / len(held),
                "max": max(held),
                "builds": len(held),
                "not_covered": uncovered,
            },
            "fit_error": {"mean": sum(every) / len(every), "max": max(every)},
        }
        lines.append(f"| {variant} | {len(models)} | {len(held_out) + uncovered} ({len(held_out)}) | "
                     f"{100 * sum(held) / len(held):.1f}% / {100 * max(held):.1f}% | "
                     f"{100 * sum(every) / len(every):.1f}% / {100 * max(every):.1f}% |")  # fmt: skip
        for i, (index, arch, schedule) in enumerate(builds):
            total = sum(op["count"] for op in models[i])
            print(f"{variant:8} {arch.name or index!s:>14} {schedule:5} p{arch.patch_size} d{arch.embed_dim} "
                  f"L{arch.depth}: measured "
                  f"{total:>12,.0f}, predicted {predicted(final, models[i]):>12,.0f}"
                  f"{' (held out first)' if i in held_out else ''}")  # fmt: skip
    MODEL_FILE.write_text(json.dumps(result, indent=1) + "\n")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.doc:
        Path(args.doc).write_text(table)


if __name__ == "__main__":
    main()
