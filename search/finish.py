"""The winner's finish: finetune from inherited weights at its own resolution, calibrate, quantize.

Quantization is post-training (PTQ, from the calibration ranges) or, where it does better on the held-out
validation images, quantization-aware finetuning (QAT, `mcuformer.quant.qat`) at those same ranges. Accuracies of
int8 models are the numpy integer reference's (`mcuformer.quant.reference`), which the generated C equals bit for
bit, so they are what the device will show.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mcuformer.checkpoint import DatasetMeta, ModelFile, atomic_save
from mcuformer.data import ImageSet
from mcuformer.errors import McuformerError
from mcuformer.model import VisionTransformer
from mcuformer.progress import progress
from mcuformer.quant import reference
from mcuformer.quant.ptq import Calibration, calibrate, quantize_model
from mcuformer.quant.qat import FakeQuantForward
from mcuformer.recipe import RECIPE_AUGMENT, Augment, lr_at, make_optimizer
from mcuformer.search.data import SearchData, resize_batch
from mcuformer.train import Forward, evaluate, pixels_to_tensor, plain_forward, soft_cross_entropy

CHECKPOINT = "finetune.pt"
QAT_CHECKPOINT = "qat.pt"


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 5
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_epochs: float = 0.2
    augment: Augment = RECIPE_AUGMENT
    distill: float = 0.0  # weight of the teacher's soft predictions in the targets (0: labels only)
    calibration_images: int = 512
    qat_epochs: int = 1  # quantization-aware epochs after the finetune (0: post-training quantization only)
    qat_lr: float = 1e-4
    seed: int = 0
    device: str = "cpu"

    def qat(self) -> FinetuneConfig:
        """The settings of the quantization-aware phase: a short, low learning-rate finetune without mixing."""
        return replace(self, epochs=self.qat_epochs, lr=self.qat_lr, warmup_epochs=0.0,
                       augment=replace(self.augment, cutmix=0.0, mixup=0.0))  # fmt: skip


def finetune(
    model: VisionTransformer,
    data: SearchData,
    out_dir: str | Path,
    config: FinetuneConfig,
    resume: bool = True,
    forward: Forward = plain_forward,
    checkpoint: str = CHECKPOINT,
    teacher: VisionTransformer | None = None,
) -> VisionTransformer:
    """Finetune in place (checkpoint per epoch, resumable) on the search's training split at the model's size.
    `forward` replaces the plain forward (QAT passes its fake-quantized one). With a `teacher` (the supernet's
    largest subnet, already trained) and `config.distill` > 0, the targets blend in its soft predictions."""
    arch = model.arch
    phase = "finetune" if checkpoint == CHECKPOINT else Path(checkpoint).stem
    train_set = data.at("train", arch.image_size)
    ckpt_path = Path(out_dir) / checkpoint
    device = torch.device(config.device)
    model.to(device)
    if teacher is not None:
        teacher.to(device).eval()
    optimizer = make_optimizer(model.parameters(), config.lr, config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed + 1)
    steps = math.ceil(len(train_set) / config.batch_size)
    total, warmup = steps * config.epochs, int(config.warmup_epochs * steps)
    start = 0
    if resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        if state["arch"] != arch.to_dict() or state["config"] != asdict(config):
            raise McuformerError(f"{ckpt_path} belongs to another {phase}; use a new --out or delete it")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        start = state["epoch"]
    labels = torch.from_numpy(train_set.labels)
    for epoch in range(start, config.epochs):
        model.train()
        order = torch.randperm(len(train_set), generator=generator)
        bar = progress(range(steps), desc=f"{phase} epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False)
        running = 0.0
        for step in bar:
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            pixels, targets = config.augment(pixels_to_tensor(train_set.images[idx.numpy()]), labels[idx],
                                             arch.num_classes, generator)  # fmt: skip
            pixels, targets = pixels.to(device), targets.to(device)
            if teacher is not None and config.distill > 0:
                with torch.no_grad():
                    taught = F.softmax(teacher(resize_batch(pixels, teacher.arch.image_size)), dim=1)
                targets = (1 - config.distill) * targets + config.distill * taught
            for group in optimizer.param_groups:
                group["lr"] = lr_at(epoch * steps + step, total, warmup, config.lr)
            loss = soft_cross_entropy(forward(model, pixels), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running = 0.9 * running + 0.1 * loss.item() if step else loss.item()
            bar.set_postfix(loss=f"{running:.3f}", refresh=False)
        accuracy = evaluate(model, data.at("val", arch.image_size), device=config.device, forward=forward)
        tqdm.write(f"{phase} epoch {epoch + 1}/{config.epochs}: loss {running:.3f}, val accuracy {accuracy:.4f}")
        atomic_save({"arch": arch.to_dict(), "config": asdict(config), "epoch": epoch + 1,
                     "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "generator": generator.get_state()}, ckpt_path)  # fmt: skip
    return model.cpu().eval()


def int8_accuracy(model: VisionTransformer, calibration: Calibration, images: ImageSet) -> float:
    """Top-1 accuracy of the int8 reference (what the device computes, bit for bit)."""
    qmodel = quantize_model(model, calibration)
    predicted = reference.predict(qmodel, images.images).argmax(axis=1)
    return float(np.mean(predicted == images.labels))


def quantize(
    model: VisionTransformer, data: SearchData, out_dir: str | Path, config: FinetuneConfig
) -> tuple[VisionTransformer, Calibration, dict[str, float]]:
    """Calibrate on training images; then, if `config.qat_epochs`, finetune a copy quantization-aware at those
    ranges and keep whichever int8 model is more accurate on the validation images (PTQ on a tie)."""
    size = model.arch.image_size
    val_set = data.at("val", size)
    calibration = calibrate(model, pixels_to_tensor(data.at("train", size).images[: config.calibration_images]))
    ptq_val = int8_accuracy(model, calibration, val_set)
    metrics = {"ptq_val_int8_accuracy": ptq_val, "qat": 0.0}
    if config.qat_epochs > 0:
        qat_model = copy.deepcopy(model)
        qat_model = finetune(qat_model, data, out_dir, config.qat(), resume=True,
                             forward=FakeQuantForward(qat_model, calibration), checkpoint=QAT_CHECKPOINT)  # fmt: skip
        qat_val = int8_accuracy(qat_model, calibration, val_set)
        metrics["qat_val_int8_accuracy"] = qat_val
        tqdm.write(f"int8 validation accuracy: post-training {100 * ptq_val:.2f}%, quantization-aware "
                   f"{100 * qat_val:.2f}%: keeping {'QAT' if qat_val > ptq_val else 'PTQ'}")  # fmt: skip
        if qat_val > ptq_val:
            model, metrics["qat"] = qat_model, 1.0
    return model, calibration, metrics


def package(
    model: VisionTransformer, data: SearchData, out_dir: str | Path, config: FinetuneConfig
) -> tuple[ModelFile, dict[str, float]]:
    """Quantize (PTQ or QAT, see `quantize`) and measure fp32 and int8 test accuracy: the model.pt contents."""
    model, calibration, metrics = quantize(model, data, out_dir, config)
    test_set = data.at("test", model.arch.image_size)
    metrics.update({
        "fp32_accuracy": evaluate(model, test_set),
        "int8_accuracy": int8_accuracy(model, calibration, test_set),
        "epochs": float(config.epochs),
    })  # fmt: skip
    meta = DatasetMeta(data.name, tuple(data.mean), tuple(data.std), tuple(data.train.classes))
    return ModelFile(model=model, calibration=calibration, dataset=meta, metrics=metrics), metrics
