"""mcuformer vs TensorFlow Lite Micro on the same trained models: SRAM, flash, int8 accuracy, agreement.

    python benchmarks/peers.py [--epochs 3] [--images 2000] [--runs runs/peers] [--out docs/benchmarks.md]

Each reference model is trained on Fashion-MNIST (resized where its input is larger) for `--epochs` epochs, or
reused from `--runs` when already trained (training resumes from its checkpoint). Ours: the compiled plan's
SRAM and flash on the STM32F746, and the int8 reference (what the device computes, bit for bit). TFLM: the same
fp32 weights converted to a full-int8 .tflite with the same 512 calibration images (GELU as x * sigmoid(1.702 x):
TFLM has no GELU kernel), run in tflite-micro's Python interpreter; its recorded arena and the .tflite size.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from mcuformer.arch import PRESETS, ArchConfig
from mcuformer.checkpoint import load_model
from mcuformer.peers.compare import compare, peer_table
from mcuformer.train import TrainConfig, load_for_arch, train

DATASET = "fashion-mnist"
MODELS: tuple[ArchConfig, ...] = (
    PRESETS["fmnist-small"],
    PRESETS["fmnist-lowrank"],
    # The 32x32 patch-4 d=64 4-layer reference, on Fashion-MNIST resized to 32x32 (one channel).
    replace(PRESETS["cifar-p4-d64"], channels=1, num_classes=10, name="fmnist32-p4-d64"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=2000, help="test images both int8 models classify")
    parser.add_argument("--runs", type=Path, default=Path("runs/peers"))
    parser.add_argument("--out", type=Path, help="also write the table as markdown here")
    args = parser.parse_args()
    rows = []
    for arch in MODELS:
        run = args.runs / arch.name
        if not (run / "model.pt").is_file():
            train(arch, DATASET, run, TrainConfig(epochs=args.epochs))
        calibration = load_for_arch(DATASET, "train", arch, None)
        calibration = calibration.subset(np.arange(512))
        test = load_for_arch(DATASET, "test", arch, None).subset(np.arange(args.images))
        rows.append(compare(load_model(run / "model.pt"), calibration, test, "stm32f746", arch.name))
        print(peer_table(rows[-1:]).splitlines()[-1], flush=True)
    table = peer_table(rows)
    print(table)
    if args.out:
        command = f"python benchmarks/peers.py --epochs {args.epochs} --images {args.images} --out {args.out}"
        text = f"# Benchmarks: mcuformer vs TensorFlow Lite Micro\n\nRegenerate: `{command}`\n\n"
        args.out.write_text(text + __doc__.split("\n", 3)[3] + "\n" + table + "\n")


if __name__ == "__main__":
    main()
