"""The training recipe's shared parts: batch augmentation with soft targets, and the learning-rate schedule.

`mcuformer train`, the supernet's sandwich steps and the search's finish all draw their batches through one
`Augment` and their learning rates from `lr_at`, so a recipe measured once (docs/search.md, "Recipe") is the recipe
everywhere. Every random draw comes from the `torch.Generator` passed in: a seeded run replays exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Augment:
    """Batch augmentation on float NCHW pixels in [0, 1]; targets are soft (label smoothing, CutMix, mixup).

    hflip: mirror half the images. crop_pad: random crop after zero padding by this many pixels (0: off).
    erasing: probability per image of random erasing (one box of 2-25% of the image, aspect 0.3-3.3, filled with
    uniform noise; Zhong et al., 2020). cutmix / mixup: probability per batch of CutMix (Beta(1, 1)) or, when CutMix
    was not drawn, mixup (Beta(0.8, 0.8)). label_smoothing: the share of the target spread over all classes.
    """

    hflip: bool = True
    crop_pad: int = 0
    erasing: float = 0.0
    cutmix: float = 0.0
    mixup: float = 0.0
    label_smoothing: float = 0.1

    def __post_init__(self) -> None:
        for name in ("erasing", "cutmix", "mixup", "label_smoothing"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"augmentation {name} must be a probability in [0, 1], got {getattr(self, name)}")
        if self.crop_pad < 0:
            raise ValueError(f"crop_pad must be >= 0, got {self.crop_pad}")

    def __call__(
        self, pixels: Tensor, labels: Tensor, classes: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """(augmented pixels, soft targets [N, classes]) for a batch of pixels and integer labels (on the CPU)."""
        pixels = flip_and_crop(pixels, self.crop_pad, self.hflip, generator)
        if self.erasing > 0:
            pixels = random_erasing(pixels, self.erasing, generator)
        targets = soft_targets(labels, classes, self.label_smoothing)
        if self.cutmix > 0 and float(torch.rand((), generator=generator)) < self.cutmix:
            pixels, targets = cutmix(pixels, targets, generator)
        elif self.mixup > 0 and float(torch.rand((), generator=generator)) < self.mixup:
            pixels, targets = mixup(pixels, targets, generator)
        return pixels, targets


# The measured recipe's augmentation (docs/search.md, "Recipe"): the default of every training loop.
RECIPE_AUGMENT = Augment()


def soft_targets(labels: Tensor, classes: int, smoothing: float) -> Tensor:
    return F.one_hot(labels, classes).float() * (1 - smoothing) + smoothing / classes


def flip_and_crop(batch: Tensor, pad: int, hflip: bool, generator: torch.Generator) -> Tensor:
    """Random crop with zero padding and random horizontal flip, batched."""
    n, _, h, w = batch.shape
    if pad:
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        padded = F.pad(batch, (pad, pad, pad, pad))
        rows = (dy[:, None] + torch.arange(h)[None])[:, None, :, None].expand(n, batch.shape[1], h, w + 2 * pad)
        cols = (dx[:, None] + torch.arange(w)[None])[:, None, None, :].expand(n, batch.shape[1], h, w)
        batch = padded.gather(2, rows).gather(3, cols)
    if hflip:
        flip = torch.rand(n, generator=generator) < 0.5
        batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
    return batch


def random_erasing(batch: Tensor, probability: float, generator: torch.Generator) -> Tensor:
    """Erase one random box per image (with `probability`) and fill it with uniform noise; vectorised."""
    n, c, h, w = batch.shape
    area = h * w * (0.02 + 0.23 * torch.rand(n, generator=generator))
    log_aspect = math.log(0.3) + (math.log(1 / 0.3) - math.log(0.3)) * torch.rand(n, generator=generator)
    box_h = torch.sqrt(area * torch.exp(log_aspect)).round().clamp(1, h - 1)
    box_w = torch.sqrt(area / torch.exp(log_aspect)).round().clamp(1, w - 1)
    top = (torch.rand(n, generator=generator) * (h - box_h + 1)).floor()
    left = (torch.rand(n, generator=generator) * (w - box_w + 1)).floor()
    erase = torch.rand(n, generator=generator) < probability
    ys, xs = torch.arange(h)[None, :], torch.arange(w)[None, :]
    inside_y = (ys >= top[:, None]) & (ys < (top + box_h)[:, None])
    inside_x = (xs >= left[:, None]) & (xs < (left + box_w)[:, None])
    mask = (inside_y[:, :, None] & inside_x[:, None, :] & erase[:, None, None])[:, None]
    noise = torch.rand(batch.shape, generator=generator)
    return torch.where(mask, noise, batch)


def cutmix(pixels: Tensor, targets: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Paste a random box of a shuffled batch into each image (Yun et al., 2019); targets mix by the pasted area.

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


def mixup(pixels: Tensor, targets: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Blend each image with one of a shuffled batch (Zhang et al., 2018), lam ~ Beta(0.8, 0.8)."""
    a, b = _gamma_pair(0.8, generator)
    lam = a / (a + b)
    perm = torch.randperm(len(pixels), generator=generator)
    return lam * pixels + (1 - lam) * pixels[perm], lam * targets + (1 - lam) * targets[perm]


def _gamma_pair(alpha: float, generator: torch.Generator) -> tuple[float, float]:
    """Two Gamma(alpha, 1) draws from `generator` (Marsaglia-Tsang on alpha + 1, boosted by U^(1/alpha))."""
    draws = []
    for _ in range(2):
        d = alpha + 1 - 1 / 3
        c = 1 / math.sqrt(9 * d)
        while True:
            x = float(torch.randn((), generator=generator))
            v = (1 + c * x) ** 3
            u = float(torch.rand((), generator=generator))
            if v > 0 and math.log(u) < 0.5 * x * x + d - d * v + d * math.log(v):
                break
        draws.append(d * v * float(torch.rand((), generator=generator)) ** (1 / alpha))
    return draws[0], draws[1]


def make_optimizer(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW, fused: one kernel updates every parameter instead of a dozen small ops per tensor; on these small
    models that is a measurable share of a CPU step (`benchmarks/train_speed.py`, docs/search.md)."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to zero at `total`."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return base * 0.5 * (1 + math.cos(math.pi * progress))
