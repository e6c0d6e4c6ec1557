"""Supernet training: the sandwich rule with in-place distillation, sampling only architectures that fit.

Each step trains the largest fitting subnet on the labels, then the smallest and `num_random` random fitting
subnets on the largest one's soft predictions (in-place distillation), accumulating gradients into one update.
A checkpoint after every epoch (atomic) lets a killed run resume losing at most the epoch in progress. With
`torchrun`, every process trains the same subnets on its share of each batch and gradients are averaged by
all-reduce (data parallel, DDP semantics); see `_average_gradients` for why not the DDP wrapper itself.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from mcuformer.checkpoint import atomic_save
from mcuformer.errors import McuformerError
from mcuformer.progress import progress
from mcuformer.recipe import RECIPE_AUGMENT, Augment, lr_at, make_optimizer
from mcuformer.search.data import SearchData, resize_batch
from mcuformer.search.genome import Genome
from mcuformer.search.sampler import FitSampler
from mcuformer.search.supernet import Supernet
from mcuformer.train import pixels_to_tensor, soft_cross_entropy

CHECKPOINT = "supernet.pt"


@dataclass(frozen=True)
class SupernetTrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    augment: Augment = RECIPE_AUGMENT
    num_random: int = 2  # random subnets per step besides the largest and the smallest
    distill: bool = True  # in-place distillation from the largest subnet
    seed: int = 0
    device: str = "cpu"


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
    """Train `net` in place; returns the training log. `stop_after_epoch` simulates an interrupt (tests)."""
    rank, world = _world()
    out = Path(out_dir)
    ckpt_path = out / CHECKPOINT
    device = torch.device(config.device)
    net.to(device)
    sandwich_step = SandwichStep(net, sampler, config)
    optimizer = make_optimizer(net.parameters(), config.lr, config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    rng = random.Random(config.seed)
    steps_per_epoch = math.ceil(len(data.train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = int(config.warmup_epochs * steps_per_epoch)
    log: dict[str, Any] = {"epochs": [], "config": asdict(config)}
    start_epoch = 0
    if resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        if state["config"] != asdict(config) or state["space"] != repr(net.space):
            raise McuformerError(f"{ckpt_path} was written with other settings; use a new --out or delete it")
        net.load_state_dict(state["supernet"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        rng.setstate(state["rng"])
        log = state["log"]
        start_epoch = state["epoch"]
        if rank == 0:
            tqdm.write(f"resuming supernet training after epoch {start_epoch}/{config.epochs}")

    labels_all = torch.from_numpy(data.train.labels)
    classes = net.space.num_classes
    for epoch in range(start_epoch, config.epochs):
        net.train()
        order = torch.randperm(len(data.train), generator=generator)
        bar = progress(range(steps_per_epoch), desc=f"supernet epoch {epoch + 1}/{config.epochs}", unit="step",
                   leave=False, disable=rank != 0)  # fmt: skip
        running = 0.0
        for step in bar:
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            idx = idx[rank::world]  # this process's share of the batch
            pixels, targets = config.augment(pixels_to_tensor(data.train.images[idx.numpy()]), labels_all[idx],
                                             classes, generator)  # fmt: skip
            pixels, targets = pixels.to(device), targets.to(device)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(epoch * steps_per_epoch + step, total_steps, warmup, config.lr)
            optimizer.zero_grad(set_to_none=True)
            loss = sandwich_step(pixels, targets, rng)
            running = 0.9 * running + 0.1 * loss if step else loss
            _average_gradients(net, world)
            optimizer.step()
            bar.set_postfix(loss=f"{running:.3f}", refresh=False)
        log["epochs"].append({"epoch": epoch + 1, "largest_loss": running})
        if rank == 0:
            tqdm.write(f"supernet epoch {epoch + 1}/{config.epochs}: largest-subnet loss {running:.3f}")
            atomic_save(
                {
                    "supernet": net.state_dict(), "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(), "rng": rng.getstate(), "epoch": epoch + 1,
                    "config": asdict(config), "space": repr(net.space), "log": log,
                },
                ckpt_path,
            )  # fmt: skip
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            break
    log["largest"] = sandwich_step.largest.to_dict()
    log["smallest"] = sandwich_step.smallest.to_dict()
    return log
