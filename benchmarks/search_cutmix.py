"""CutMix on and off for the finish of a search winner: int8 accuracy and how local the first block's attention is.

    python benchmarks/search_cutmix.py RUN_FOLDER [--cutmix 0.5] [--epochs 3]

RUN_FOLDER is a finished `mcuformer search` folder (supernet.pt, search.json). The winner is extracted from the
supernet twice and finetuned with the run's settings, once without and once with CutMix (probability per batch);
both are calibrated and measured with the int8 reference on the test set. Attention locality: the mean distance,
in patches, between a query patch and the patches it attends to, weighted by attention, in block 0 (class token
excluded), averaged over heads and 500 test images; smaller is more local.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch
from bench_common import load_search_run

from mcuformer.data import pixels_to_tensor
from mcuformer.model import VisionTransformer
from mcuformer.search.finish import FinetuneConfig, finetune, package


@torch.no_grad()
def attention_distance(model: VisionTransformer, pixels: torch.Tensor) -> float:
    arch = model.arch
    scores: list[torch.Tensor] = []

    def observe(name: str, tensor: torch.Tensor) -> None:
        if name == "blocks.0.attn.scores":
            scores.append(tensor)

    model(pixels, observe=observe)
    probs = scores[0].softmax(-1)  # [B, heads, N, N]
    offset = 1 if arch.pool == "cls" else 0
    probs = probs[:, :, offset:, offset:]
    grid = arch.grid
    ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], 1).float()
    dist = torch.cdist(pos, pos)  # [P, P] in patches
    probs = probs / probs.sum(-1, keepdim=True)  # renormalise without the class token
    return float((probs * dist).sum(-1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a finished search folder")
    parser.add_argument("--cutmix", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, help="finetune epochs (default: the run's)")
    args = parser.parse_args()
    run = Path(args.run)
    _, preset, data, net, result = load_search_run(run)
    from mcuformer.arch import ArchConfig

    arch = ArchConfig.from_dict(result["winner"]["arch"])
    test_pixels = pixels_to_tensor(data.at("test", arch.image_size).images[:500])
    rows = []
    for cutmix in (0.0, args.cutmix):
        ft: FinetuneConfig = replace(
            preset.finetune,
            augment=replace(preset.finetune.augment, cutmix=cutmix),
            epochs=args.epochs or preset.finetune.epochs,
            qat_epochs=0,
        )  # CutMix alone: post-training quantization
        out = run / f"cutmix-{cutmix:g}"
        out.mkdir(exist_ok=True)
        model = finetune(net.extract(arch).cpu(), data, out, ft)
        _, metrics = package(model, data, out, ft)
        rows.append(
            (cutmix, metrics["fp32_accuracy"], metrics["int8_accuracy"], attention_distance(model, test_pixels))
        )
    print(
        "| CutMix probability | fp32 test accuracy | int8 test accuracy | block-0 mean attention distance (patches) |"
    )
    print("|---|---|---|---|")
    for cutmix, fp32, int8, distance in rows:
        print(f"| {cutmix:g} | {100 * fp32:.2f}% | {100 * int8:.2f}% | {distance:.3f} |")


if __name__ == "__main__":
    main()
