"""Recipe ablation: `mcuformer train` (the recipe every training loop shares) under one change at a time.

    python benchmarks/train_recipe.py --base patch=7 epochs=25 batch_size=64 \
        --variants label_smoothing=0 erasing=0.25 "crop_pad=1" "lr=0.003" [--jobs 2] [--out runs/recipe]

Each run is `mcuformer.train.train` on Fashion-MNIST with the base settings plus one variant's (several keys in one
variant: `"mixup=0.5 epochs=30"`). Accuracy is on the validation images held out of the training set (5,000, the
same for every run); the test set is never looked at here. Runs go `--jobs` at a time, one thread each (on 2 cores
two one-thread runs train more images per second than one two-thread run); each resumes from its checkpoint, so a
killed benchmark continues where it stopped. Prints a markdown table: the change, validation accuracy, the
difference to the base and the training seconds (wall time of the epochs, one core each).

Keys: architecture `patch`, `dim`, `depth`, `heads`, `mlp`, `pool`; training `epochs`, `batch_size`, `lr`,
`weight_decay`, `warmup_epochs`; augmentation `hflip`, `crop_pad`, `erasing`, `cutmix`, `mixup`, `label_smoothing`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from bench_common import Job, parse_settings, run_parallel

ARCH_KEYS = {"patch": "patch_size", "dim": "embed_dim", "depth": "depth", "heads": "num_heads", "mlp": "mlp_ratio",
             "pool": "pool"}  # fmt: skip
TRAIN_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "warmup_epochs")
BASE_ARCH: dict[str, Any] = {"image_size": 28, "channels": 1, "patch_size": 4, "embed_dim": 64, "depth": 4,
                             "num_heads": 4, "mlp_ratio": 2.0, "num_classes": 10, "pool": "mean"}  # fmt: skip


def run_one(settings: dict[str, Any], out: Path) -> None:
    import torch

    from mcuformer.arch import ArchConfig
    from mcuformer.recipe import Augment
    from mcuformer.train import TrainConfig, train

    torch.set_num_threads(1)
    arch_args = dict(BASE_ARCH)
    config = TrainConfig()
    augment_names = {f.name for f in fields(Augment)}
    augment: dict[str, Any] = {}
    for key, value in settings.items():
        if key in ARCH_KEYS:
            arch_args[ARCH_KEYS[key]] = value
        elif key in TRAIN_KEYS:
            config = replace(config, **{key: value})
        elif key in augment_names:
            augment[key] = bool(value) if key == "hflip" else value
        else:
            raise SystemExit(f"train_recipe: unknown key {key!r}")
    config = replace(config, augment=replace(config.augment, **augment))
    train(ArchConfig.uniform(**arch_args), "fashion-mnist", out, config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", nargs="*", default=[], help="key=value settings of every run")
    parser.add_argument("--variants", nargs="*", default=[], help="one change per run (quote several keys)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default="runs/recipe")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a single run, in its own process
    args = parser.parse_args()
    base = parse_settings(args.base)
    if args.one is not None:
        run_one({**base, **parse_settings([args.one])}, Path(args.out))
        return

    from mcuformer.checkpoint import load_model

    # One folder per base, so a finished run is reused only under the same base settings.
    root = Path(args.out) / (",".join(args.base) or "defaults")
    runs = [("base", "")] + [(variant.replace(" ", ","), variant) for variant in args.variants]
    jobs = [
        Job(name, [sys.executable, __file__, "--out", str(root / name), "--one", variant, "--base", *args.base],
            root / name)
        for name, variant in runs
        if not (root / name / "model.pt").is_file()
    ]  # fmt: skip
    run_parallel(jobs, args.jobs)

    print(f"\nbase: {' '.join(args.base) or '(defaults)'} (`python benchmarks/train_recipe.py`, validation split)\n")
    print("| change | validation accuracy | vs base | training seconds |")
    print("|---|---|---|---|")
    base_accuracy = load_model(root / "base" / "model.pt").metrics["fp32_val_accuracy"]
    for name, variant in runs:
        metrics = load_model(root / name / "model.pt").metrics
        accuracy = metrics["fp32_val_accuracy"]
        print(f"| {variant or 'base'} | {100 * accuracy:.2f}% | {100 * (accuracy - base_accuracy):+.2f} | "
              f"{metrics['train_seconds']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
