"""Training of one fixed architecture on the one training loop (`loop.py`), then model.pt; and evaluation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from mcuformer.arch import ArchConfig
from mcuformer.checkpoint import DatasetMeta, ModelFile, save_model
from mcuformer.data import ImageSet, load_dataset, pixels_to_tensor, split_validation
from mcuformer.errors import McuformerError
from mcuformer.loop import LoopConfig, Run, fit, soft_cross_entropy
from mcuformer.model import VisionTransformer
from mcuformer.quant.ptq import calibrate


@dataclass(frozen=True)
class TrainConfig(LoopConfig):
    calibration_images: int = 512
    val_size: int = 5000  # training images held out: per-epoch validation accuracy (the test set only reports)
    train_limit: int | None = None  # use the first N training images (tests, quick runs)


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
    model = VisionTransformer(arch, train_set.mean, train_set.std)

    def step(pixels: torch.Tensor, targets: torch.Tensor) -> float:
        loss = soft_cross_entropy(model(pixels), targets)
        loss.backward()
        return loss.item()

    identity = {"arch": arch.to_dict(), "dataset": dataset, "config": _resume_key(config)}
    run = Run(model, train_set, arch.num_classes, config, out / "checkpoint.pt", identity, step,
              end_epoch=lambda: {"val_accuracy": evaluate(model, val_set, device=config.device)})  # fmt: skip
    history = fit(run, resume)

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
