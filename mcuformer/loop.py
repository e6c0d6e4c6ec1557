"""The one training loop: shuffled batches with the recipe's augmentation, warm-up then cosine learning rate, AdamW,
progress lines, an atomic checkpoint after every epoch and resume from it.

Training one architecture (`train.py`), the supernet's sandwich steps (`search/train.py`) and the winner's finetune
and quantization-aware phase (`search/finish.py`) are hooks into it: what a step computes, what an epoch reports,
and what identifies a run's checkpoint. A killed run resumes after its last finished epoch and then computes what
the uninterrupted run would have (the model, optimiser, data order, augmentation and sampler states are saved).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from mcuformer.checkpoint import atomic_save
from mcuformer.data import ImageSet, pixels_to_tensor
from mcuformer.errors import McuformerError
from mcuformer.progress import progress
from mcuformer.recipe import RECIPE_AUGMENT, Augment, lr_at, make_optimizer


@dataclass(frozen=True)
class LoopConfig:
    """What every training run sets: the schedule, the optimiser, the augmentation, the seed and the device."""

    epochs: int = 15
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    augment: Augment = RECIPE_AUGMENT
    seed: int = 0
    device: str = "cpu"


# One step: accumulate the gradients of a batch (pixels and soft targets, on the device) into the parameters'
# `.grad`; returns the loss to report.
Step = Callable[[torch.Tensor, torch.Tensor], float]


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy against soft targets (label smoothing, CutMix, mixup, a teacher's probabilities)."""
    return torch.sum(-targets * torch.log_softmax(logits, dim=1), dim=1).mean()


@dataclass
class Run:
    """What one run of the loop trains, on which images, and where its checkpoint lives."""

    model: nn.Module
    data: ImageSet  # the training images at the model's resolution
    num_classes: int
    config: LoopConfig
    checkpoint: Path
    identity: dict[str, Any]  # what a checkpoint must hold to be resumed by this run (architecture, settings)
    step: Step
    end_epoch: Callable[[], dict[str, Any]] = dict  # the epoch's record beyond its loss and time (validation)
    name: str = "epoch"  # progress lines: "<name> 3/10"
    generator_seed: int | None = None  # the data order and augmentation (None: config.seed)
    rng: random.Random | None = None  # a Python RNG the step draws from (the supernet's sampler)
    shard: tuple[int, int] = (0, 1)  # (rank, processes): this process's share of each batch; rank 0 writes
    before_update: Callable[[], None] | None = None  # between the step and the optimiser (all-reduce)


def fit(run: Run, resume: bool = True, stop_after_epoch: int | None = None) -> list[dict[str, Any]]:
    """Train `run.model` in place; returns one record per finished epoch (resumed ones included).
    `stop_after_epoch` ends the run there, as a kill would (tests)."""
    config, rank = run.config, run.shard[0]
    device = torch.device(config.device)
    run.model.to(device)
    optimizer = make_optimizer(run.model.parameters(), config.lr, config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed if run.generator_seed is None else run.generator_seed)
    steps = math.ceil(len(run.data) / config.batch_size)
    total, warmup = steps * config.epochs, int(config.warmup_epochs * steps)
    start, history = 0, []
    if resume and run.checkpoint.is_file():
        state = torch.load(run.checkpoint, map_location=device, weights_only=False)
        differing = [key for key, value in run.identity.items() if state.get(key) != value]
        if differing:
            raise McuformerError(f"{run.checkpoint} was written by another run or with other settings "
                                 f"({', '.join(differing)}); use a new --out or delete it")  # fmt: skip
        run.model.load_state_dict(_legacy(state, "model", "supernet"))
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        if run.rng is not None:
            run.rng.setstate(state["rng"])
        start, history = state["epoch"], state.get("history", state.get("log", {}).get("epochs", []))
        if rank == 0:
            tqdm.write(f"resuming {run.name} from {run.checkpoint} after epoch {start}/{config.epochs}")

    labels = torch.from_numpy(run.data.labels)
    rank, world = run.shard
    for epoch in range(start, config.epochs):
        run.model.train()
        started = time.perf_counter()
        order = torch.randperm(len(run.data), generator=generator)
        title = f"{run.name} {epoch + 1}/{config.epochs}"
        bar = progress(range(steps), desc=title, unit="batch", leave=False, disable=rank != 0)
        running = 0.0
        for step in bar:
            idx = order[step * config.batch_size : (step + 1) * config.batch_size][rank::world]
            pixels, targets = config.augment(pixels_to_tensor(run.data.images[idx.numpy()]), labels[idx],
                                             run.num_classes, generator)  # fmt: skip
            for group in optimizer.param_groups:
                group["lr"] = lr_at(epoch * steps + step, total, warmup, config.lr)
            optimizer.zero_grad(set_to_none=True)
            loss = run.step(pixels.to(device), targets.to(device))
            if run.before_update is not None:
                run.before_update()
            optimizer.step()
            running = 0.9 * running + 0.1 * loss if step else loss
            bar.set_postfix(loss=f"{running:.3f}", refresh=False)
        record = {"epoch": epoch + 1, "loss": running, "seconds": time.perf_counter() - started, **run.end_epoch()}
        history.append(record)
        if rank == 0:
            shown = "".join(f", {k.replace('_', ' ')} {v:.4f}" for k, v in record.items() if k.endswith("accuracy"))
            tqdm.write(f"{title}: loss {running:.3f}{shown}")
            atomic_save(
                {
                    **run.identity, "epoch": epoch + 1, "model": run.model.state_dict(),
                    "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
                    "torch_rng": torch.get_rng_state(), "rng": run.rng.getstate() if run.rng else None,
                    "history": history,
                },
                run.checkpoint,
            )  # fmt: skip
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            break
    return history


def _legacy(state: dict[str, Any], key: str, old_key: str) -> Any:
    """A field of a checkpoint, also under the name the supernet's own loop used before this one (2026-12-03)."""
    return state[key] if key in state else state[old_key]
