"""Training of one fixed architecture: progress bars, a checkpoint every epoch, resume, then model.pt."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mcuformer.arch import ArchConfig
from mcuformer.checkpoint import DatasetMeta, ModelFile, atomic_save, save_model
from mcuformer.data import ImageSet, load_dataset
from mcuformer.errors import McuformerError
from mcuformer.model import VisionTransformer
from mcuformer.quant.ptq import calibrate


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    random_crop_pad: int = 0  # random-crop padding in pixels; off by default: it lowered Fashion-MNIST accuracy
    hflip: bool = True
    seed: int = 0
    calibration_images: int = 512
    train_limit: int | None = None  # use the first N training images (tests, quick runs)
    device: str = "cpu"


def pixels_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [0, 1] (the model's input)."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


def augment(batch: torch.Tensor, pad: int, hflip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, batched on float NCHW."""
    n, _, h, w = batch.shape
    if pad:
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        batch = _crop(F.pad(batch, (pad, pad, pad, pad)), dy, dx, h, w)
    if hflip:
        flip = torch.rand(n, generator=generator) < 0.5
        batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
    return batch


def _crop(padded: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, h: int, w: int) -> torch.Tensor:
    n, c = padded.shape[:2]
    rows = (dy[:, None] + torch.arange(h)[None])[:, None, :, None].expand(n, c, h, padded.shape[3])
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None])[:, None, None, :].expand(n, c, h, w)
    return out.gather(3, cols)


Forward = Callable[[VisionTransformer, torch.Tensor], torch.Tensor]


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


def load_for_arch(name: str, split: str, arch: ArchConfig, root: str | Path | None) -> ImageSet:
    data = load_dataset(name, split, root)
    if data.channels != arch.channels:
        raise McuformerError(
            f"dataset {name} has {data.channels} channel(s) but the architecture expects {arch.channels}"
        )
    if data.num_classes != arch.num_classes:
        raise McuformerError(
            f"dataset {name} has {data.num_classes} classes but the architecture has {arch.num_classes}"
        )
    return data.resized((arch.image_size, arch.image_size))


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return base * 0.5 * (1 + math.cos(math.pi * progress))


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
    train_set = load_for_arch(dataset, "train", arch, data_dir)
    test_set = load_for_arch(dataset, "test", arch, data_dir)
    if config.train_limit is not None:
        train_set = train_set.subset(np.arange(min(config.train_limit, len(train_set))))

    torch.manual_seed(config.seed)
    model = VisionTransformer(arch, train_set.mean, train_set.std).to(config.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = int(config.warmup_epochs * steps_per_epoch)

    start_epoch = 0
    ckpt_path = out / "checkpoint.pt"
    if resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location=config.device, weights_only=False)
        if state.get("arch") != arch.to_dict() or state.get("dataset") != dataset:
            raise McuformerError(f"{ckpt_path} belongs to another run; use a new --out or delete it")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch = state["epoch"]
        tqdm.write(f"resuming {out} after epoch {start_epoch}/{config.epochs}")

    labels = torch.from_numpy(train_set.labels)
    for epoch in range(start_epoch, config.epochs):
        model.train()
        order = torch.randperm(len(train_set), generator=generator)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False)
        running = 0.0
        for step in bar:
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            pixels = augment(pixels_to_tensor(train_set.images[idx.numpy()]), config.random_crop_pad,
                             config.hflip, generator).to(config.device)  # fmt: skip
            for group in optimizer.param_groups:
                group["lr"] = lr_at(epoch * steps_per_epoch + step, total_steps, warmup, config.lr)
            loss = F.cross_entropy(model(pixels), labels[idx].to(config.device),
                                   label_smoothing=config.label_smoothing)  # fmt: skip
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running = 0.9 * running + 0.1 * loss.item() if step else loss.item()
            bar.set_postfix(loss=f"{running:.3f}")
        accuracy = evaluate(model, test_set, device=config.device)
        tqdm.write(f"epoch {epoch + 1}/{config.epochs}: loss {running:.3f}, test accuracy {accuracy:.4f}")
        atomic_save(
            {
                "arch": arch.to_dict(), "dataset": dataset, "epoch": epoch + 1, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
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
        metrics={"fp32_accuracy": fp32_accuracy, "epochs": float(config.epochs)},
    )
    save_model(result, out / "model.pt")
    return result
