"""A timm ViT through ONNX onto the emulated Cortex-M7, and how close its QDQ export runs to the int8 reference.

    python benchmarks/onnx_interop.py [--images 50] [--out runs/onnx_interop]

1. timm `vit_tiny_patch16_224` built small (28x28 grey, 7x7 patches, width 32, depth 2, 2 heads; random weights),
   exported with PyTorch's exporter (opset 17), compiled with `mcuformer compile vit.onnx --calib fashion-mnist`
   and run on QEMU's Cortex-M7 over serial: device logits against the int8 reference, memory, instructions.
2. The compiled model exported again as QDQ ONNX (`mcuformer export --qdq`) and run by onnx's reference evaluator on
   the same test images: int8 logit steps between it and the integer reference, and top-1 agreement.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the timm import shim and model builders
from onnx_models import export, timm_vit  # noqa: E402

from mcuformer.checkpoint import load_model  # noqa: E402
from mcuformer.cli import main  # noqa: E402
from mcuformer.codegen.onnx.qdq import export_qdq  # noqa: E402
from mcuformer.data import load_dataset  # noqa: E402
from mcuformer.evaluate import evaluate_build  # noqa: E402
from mcuformer.quant import reference  # noqa: E402
from mcuformer.quant.ptq import quantize_model  # noqa: E402


def qdq_agreement(model_path: Path, out: Path, images: np.ndarray) -> str:
    model_file = load_model(model_path)
    qvit = quantize_model(model_file.model, model_file.calibration)
    evaluator = ReferenceEvaluator(onnx.load(str(export_qdq(model_file, out))))
    pixels = (images.transpose(0, 3, 1, 2) / 255.0).astype(np.float32)
    logits = np.concatenate([evaluator.run(None, {"pixels": pixels[i : i + 1]})[0] for i in range(len(pixels))])
    got = np.clip(np.round(logits / qvit.logits.scale) + qvit.logits.zero_point, -128, 127).astype(np.int64)
    expected = reference.predict(qvit, images).astype(np.int64)
    steps = np.abs(got - expected)
    top1 = float((got.argmax(1) == expected.argmax(1)).mean())
    return (f"QDQ export ({out.name}) in onnx's reference evaluator vs the integer reference on {len(images)} images: "
            f"{steps.mean():.2f} int8 logit steps apart on average, {steps.max()} at most, "
            f"exact logits on {100 * float((steps == 0).all(axis=1).mean()):.0f}% of images, "
            f"same class on {100 * top1:.0f}%")  # fmt: skip


def run(images: int, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = export(timm_vit("token"), (1, 28, 28), out / "timm_vit.onnx")
    build = out / "build"
    if main(["compile", str(path), "--board", "stm32f746", "--calib", "fashion-mnist", "-o", str(build)]) != 0:
        raise SystemExit("compile failed")
    print(evaluate_build(build, "qemu-m7", limit=images).table())
    test_images = load_dataset("fashion-mnist", "test").images[:images]
    print(qdq_agreement(build / "model.pt", out / "timm_vit_qdq.onnx", test_images))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50, help="Fashion-MNIST test images (default 50)")
    parser.add_argument("--out", type=Path, default=Path("runs/onnx_interop"))
    args = parser.parse_args()
    run(args.images, args.out)
