"""Supernet training: the sandwich rule with in-place distillation, sampling only architectures that fit.

Each step trains the largest fitting subnet on the labels, then the smallest and `num_random` random fitting
subnets on the largest one's soft predictions (in-place distillation), accumulating gradients into one update,
as steps of the one training loop (`mcuformer.loop`: a checkpoint per epoch, resume after a kill). With
`torchrun`, every process trains the same subnets on its share of each batch and gradients are averaged by
all-reduce (data parallel, DDP semantics); see `_average_gradients` for why not the DDP wrapper itself.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from mcuformer.loop import LoopConfig, Run, fit, soft_cross_entropy
from mcuformer.search.data import SearchData, resize_batch
from mcuformer.search.genome import Genome
from mcuformer.search.sampler import FitSampler
from mcuformer.search.supernet import Supernet

CHECKPOINT = "supernet.pt"


@dataclass(frozen=True)
class SupernetTrainConfig(LoopConfig):
    epochs: int = 10
    num_random: int = 2  # random subnets per step besides the largest and the smallest
    distill: bool = True  # in-place distillation from the largest subnet


class SandwichStep:
    """The gradients of one sandwich step: the largest fitting subnet on the targets, then the smallest and
    `num_random` random fitting subnets on the largest one's soft predictions (or the targets without in-place
    distillation), accumulated into the parameters' `.grad`. Returns the largest subnet's loss."""

    def __init__(self, net: Supernet, sampler: FitSampler, config: SupernetTrainConfig) -> None:
        self.net, self.sampler, self.config = net, sampler, config
        self.largest: Genome = sampler.largest()
        self.smallest: Genome = sampler.smallest()

    def __call__(self, pixels: torch.Tensor, targets: torch.Tensor, rng: random.Random) -> float:
        subnets = [self.largest, self.smallest] + [self.sampler.random(rng) for _ in range(self.config.num_random)]
        teacher = targets
        largest_loss = 0.0
        for k, genome in enumerate(subnets):
            arch = self.sampler.arch(genome)
            logits = self.net(resize_batch(pixels, arch.image_size), arch)
            loss = soft_cross_entropy(logits, teacher)
            loss.backward()
            if k == 0:
                largest_loss = loss.item()
                if self.config.distill:
                    teacher = F.softmax(logits.detach(), dim=1)
        return largest_loss


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _average_gradients(net: Supernet, world: int) -> None:
    """All-reduce the accumulated gradients. The DDP wrapper assumes one forward per backward and a fixed set of
    used parameters; the sandwich runs several subnets per step, each using a different slice, so the gradients
    are averaged here once per step, which is what DDP computes."""
    if world == 1:
        return
    for p in net.parameters():
        # Every process trains the same subnets (same seeded sampler), so the same parameters have no gradient
        # everywhere; they stay None, as in one process (AdamW skips them: no decay, no momentum step).
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(world)


def train_supernet(
    net: Supernet,
    data: SearchData,
    sampler: FitSampler,
    out_dir: str | Path,
    config: SupernetTrainConfig,
    resume: bool = True,
    stop_after_epoch: int | None = None,
) -> dict[str, Any]:
    """Train `net` in place on the one training loop; returns the training log. `stop_after_epoch` simulates an
    interrupt (tests)."""
    rank, world = _world()
    sandwich_step = SandwichStep(net, sampler, config)
    rng = random.Random(config.seed)
    identity = {"config": asdict(config), "space": repr(net.space)}
    run = Run(net, data.train, net.space.num_classes, config, Path(out_dir) / CHECKPOINT, identity,
              step=lambda pixels, targets: sandwich_step(pixels, targets, rng), name="supernet epoch", rng=rng,
              shard=(rank, world), before_update=lambda: _average_gradients(net, world))  # fmt: skip
    history = fit(run, resume, stop_after_epoch)
    return {"epochs": history, "config": asdict(config), "largest": sandwich_step.largest.to_dict(),
            "smallest": sandwich_step.smallest.to_dict()}  # fmt: skip
