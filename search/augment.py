"""CutMix (Yun et al., 2019) on float NCHW batches with soft targets, from a seeded generator.

Optional: CutMix is known to push a small ViT's early attention toward locality; `docs/search.md` measures it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_targets(labels: torch.Tensor, classes: int, smoothing: float) -> torch.Tensor:
    return F.one_hot(labels, classes).float() * (1 - smoothing) + smoothing / classes


def cutmix(
    pixels: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste a random box of a shuffled batch into each image; targets mix by the pasted area.

    The kept share lam is uniform (Beta(1, 1), CutMix's default alpha = 1).
    """
    n, _, h, w = pixels.shape
    lam = float(torch.rand((), generator=generator))
    cut_h, cut_w = int(h * (1 - lam) ** 0.5), int(w * (1 - lam) ** 0.5)
    cy = int(torch.randint(0, h, (1,), generator=generator))
    cx = int(torch.randint(0, w, (1,), generator=generator))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    perm = torch.randperm(n, generator=generator)
    mixed = pixels.clone()
    mixed[:, :, y0:y1, x0:x1] = pixels[perm, :, y0:y1, x0:x1]
    area = (y1 - y0) * (x1 - x0) / (h * w)
    return mixed, targets * (1 - area) + targets[perm] * area
