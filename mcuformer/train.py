"""Training of one fixed architecture: progress bars, a checkpoint every epoch, resume, then model.pt."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from mcuformer.arch import ArchConfig
from mcuformer.checkpoint import DatasetMeta, ModelFile, atomic_save, save_model
from mcuformer.data import ImageSet, load_dataset, split_validation
from mcuformer.errors import McuformerError
from mcuformer.model import VisionTransformer
from mcuformer.progress import progress
from mcuformer.quant.ptq import calibrate
from mcuformer.recipe import RECIPE_AUGMENT, Augment, lr_at, make_optimizer


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 15
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    augment: Augment = RECIPE_AUGMENT
    seed: int = 0
    calibration_images: int = 512
    val_size: int = 5000  # training images held out: per-epoch validation accuracy (the test set only reports)
    train_limit: int | None = None  # use the first N training images (tests, quick runs)
    device: str = "cpu"


def pixels_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [0, 1] (the model's input)."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


Forward = Callable[[VisionTransformer, torch.Tensor], torch.Tensor]


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy against soft targets (label smoothing, CutMix, mixup, a teacher's probabilities)."""
    return torch.sum(-targets * torch.log_softmax(logits, dim=1), dim=1).mean()


def plain_forward(model: VisionTransformer, pixels: torch.Tensor) -> torch.Tensor:
    return model(pixels)


@torch.no_grad()
def evaluate(model: VisionTransformer, data: ImageSet, batch_size: int = 500, device: str = "cpu",
             forward: Forward = plain_forward) -> float:  # fmt: skip
    model.eval()
    correct = 0
    for start in range(0, len(data), batch_size):
        pixels = pixels_to_tensor(data.images[start : start + batch_size]).to(device)
        predicted = forward(model, pixels).argmax(1).cpu()
        correct += int((predicted == torch.from_numpy(data.labels[start : start + batch_size])).sum())
    return correct / max(len(data), 1)


def load_for_arch(
    name: str, split: str, arch: ArchConfig, root: str | Path | None, classes: tuple[str, ...] | None = None
) -> ImageSet:
    """The split resized for `arch`, checked against its channels and classes (and, given a model's class names,
    against those: the same images under renamed or reordered folders would silently mean other labels)."""
    data = load_dataset(name, split, root)
    if classes is not None and tuple(data.classes) != tuple(classes):
        where = f"{name} at {root}" if root else name
        raise McuformerError(f"the model's classes {list(classes)} differ from {where}'s {list(data.classes)}: "
                             "evaluate on the data it was trained on (same folder names)")  # fmt: skip
    if data.channels != arch.channels:
        raise McuformerError(
            f"dataset {name} has {data.channels} channel(s) but the architecture expects {arch.channels}"
        )
    if data.num_classes != arch.num_classes:
        raise McuformerError(
            f"dataset {name} has {data.num_classes} classes but the architecture has {arch.num_classes}"
        )
    return data.resized((arch.image_size, arch.image_size))


def _resume_key(config: TrainConfig) -> dict[str, Any]:
    """The settings a checkpoint must share to be resumed: all but the device and the number of epochs (a run
    may be extended; the schedule then stretches from the resumed step on)."""
    key = asdict(config)
    del key["device"], key["epochs"]
    return key


def train(
    arch: ArchConfig,
    dataset: str,
    out_dir: str | Path,
    config: TrainConfig = TrainConfig(),
    data_dir: str | Path | None = None,
    resume: bool = True,
) -> ModelFile:
    """Train and write out_dir/model.pt; out_dir/checkpoint.pt holds the last finished epoch."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_set, val_set = split_validation(load_for_arch(dataset, "train", arch, data_dir), config.val_size,
                                          config.seed, config.train_limit)  # fmt: skip
    test_set = load_for_arch(dataset, "test", arch, data_dir)

    torch.manual_seed(config.seed)
    model = VisionTransformer(arch, train_set.mean, train_set.std).to(config.device)
    optimizer = make_optimizer(model.parameters(), config.lr, config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = int(config.warmup_epochs * steps_per_epoch)

    start_epoch, history = 0, []  # history: validation accuracy and training seconds per epoch
    ckpt_path = out / "checkpoint.pt"
    if resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location=config.device, weights_only=False)
        if state.get("arch") != arch.to_dict() or state.get("dataset") != dataset:
            raise McuformerError(f"{ckpt_path} belongs to another run; use a new --out or delete it")
        if state.get("config") != _resume_key(config):
            raise McuformerError(f"{ckpt_path} was written with other training settings; use a new --out or delete it")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, history = state["epoch"], state["history"]
        tqdm.write(f"resuming {out} after epoch {start_epoch}/{config.epochs}")

    labels = torch.from_numpy(train_set.labels)
    for epoch in range(start_epoch, config.epochs):
        model.train()
        started = time.perf_counter()
        order = torch.randperm(len(train_set), generator=generator)
        bar = progress(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False)
        running = 0.0
        for step in bar:
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            pixels, targets = config.augment(pixels_to_tensor(train_set.images[idx.numpy()]), labels[idx],
                                             arch.num_classes, generator)  # fmt: skip
            for group in optimizer.param_groups:
                group["lr"] = lr_at(epoch * steps_per_epoch + step, total_steps, warmup, config.lr)
            loss = soft_cross_entropy(model(pixels.to(config.device)), targets.to(config.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running = 0.9 * running + 0.1 * loss.item() if step else loss.item()
            bar.set_postfix(loss=f"{running:.3f}", refresh=False)
        seconds = time.perf_counter() - started
        accuracy = evaluate(model, val_set, device=config.device)
        history.append({"epoch": epoch + 1, "val_accuracy": accuracy, "seconds": seconds})
        tqdm.write(f"epoch {epoch + 1}/{config.epochs}: loss {running:.3f}, val accuracy {accuracy:.4f}")
        atomic_save(
            {
                "arch": arch.to_dict(), "dataset": dataset, "epoch": epoch + 1, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(), "config": _resume_key(config), "history": history,
            },
            ckpt_path,
        )  # fmt: skip

    model = model.cpu().eval()
    fp32_accuracy = evaluate(model, test_set)
    calib_images = train_set.images[: config.calibration_images]
    result = ModelFile(
        model=model,
        calibration=calibrate(model, pixels_to_tensor(calib_images)),
        dataset=DatasetMeta(dataset, tuple(train_set.mean), tuple(train_set.std), tuple(train_set.classes)),
        metrics={
            "fp32_accuracy": fp32_accuracy,
            "fp32_val_accuracy": history[-1]["val_accuracy"] if history else evaluate(model, val_set),
            "epochs": float(config.epochs),
            "train_seconds": sum(h["seconds"] for h in history),
        },
    )
    save_model(result, out / "model.pt")
    return result
