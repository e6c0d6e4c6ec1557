"""The winner's finish: finetune from inherited weights at its own resolution, calibrate, quantize.

Quantization is post-training (PTQ, from the calibration ranges) or, where it does better on the held-out
validation images, quantization-aware finetuning (QAT, `mcuformer.quant.qat`) at those same ranges. Accuracies of
int8 models are the numpy integer reference's (`mcuformer.quant.reference`), which the generated C equals bit for
bit, so they are what the device will show.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mcuformer.arch import ArchConfig
from mcuformer.checkpoint import DatasetMeta, ModelFile
from mcuformer.data import ImageSet, pixels_to_tensor
from mcuformer.loop import LoopConfig, Run, fit, soft_cross_entropy
from mcuformer.model import VisionTransformer
from mcuformer.quant import reference
from mcuformer.quant.ptq import Calibration, calibrate, quantize_model
from mcuformer.quant.qat import FakeQuantForward
from mcuformer.search.data import SearchData, resize_batch
from mcuformer.search.supernet import Supernet
from mcuformer.train import Forward, evaluate, plain_forward

CHECKPOINT = "finetune.pt"
QAT_CHECKPOINT = "qat.pt"


@dataclass(frozen=True)
class FinetuneConfig(LoopConfig):
    epochs: int = 5
    lr: float = 5e-4
    warmup_epochs: float = 0.2
    distill: float = 0.0  # weight of the teacher's soft predictions in the targets (0: labels only)
    calibration_images: int = 512
    qat_epochs: int = 1  # quantization-aware epochs after the finetune (0: post-training quantization only)
    qat_lr: float = 1e-4
    # False: the winner starts from fresh weights instead of the supernet's (`search --retrain`): trained like any
    # other model, so comparisons with hand-made ones measure the architecture alone.
    inherit: bool = True

    def qat(self) -> FinetuneConfig:
        """The settings of the quantization-aware phase: a short, low learning-rate finetune without mixing."""
        return replace(self, epochs=self.qat_epochs, lr=self.qat_lr, warmup_epochs=0.0,
                       augment=replace(self.augment, cutmix=0.0, mixup=0.0))  # fmt: skip


def starting_model(net: Supernet, arch: ArchConfig, data: SearchData, config: FinetuneConfig) -> VisionTransformer:
    """The finish's starting point: the supernet's weights for `arch` (the plain `VisionTransformer` compile reads),
    or with `config.inherit` off fresh weights, initialised as `mcuformer.train.train` initialises a model."""
    if config.inherit:
        return net.extract(arch).cpu()
    torch.manual_seed(config.seed)
    return VisionTransformer(arch, data.mean, data.std)


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
    """Finetune in place on the one training loop (checkpoint per epoch, resumable) on the search's training split
    at the model's size. `forward` replaces the plain forward (QAT passes its fake-quantized one). With a `teacher`
    (the supernet's largest subnet, already trained) and `config.distill` > 0, the targets blend in its soft
    predictions."""
    arch = model.arch
    device = torch.device(config.device)
    if teacher is not None:
        teacher.to(device).eval()

    def step(pixels: torch.Tensor, targets: torch.Tensor) -> float:
        if teacher is not None and config.distill > 0:
            with torch.no_grad():
                taught = F.softmax(teacher(resize_batch(pixels, teacher.arch.image_size)), dim=1)
            targets = (1 - config.distill) * targets + config.distill * taught
        loss = soft_cross_entropy(forward(model, pixels), targets)
        loss.backward()
        return loss.item()

    val_set = data.at("val", arch.image_size)
    run = Run(model, data.at("train", arch.image_size), arch.num_classes, config, Path(out_dir) / checkpoint,
              {"arch": arch.to_dict(), "config": asdict(config)}, step,
              end_epoch=lambda: {"val_accuracy": evaluate(model, val_set, device=config.device, forward=forward)},
              name="finetune epoch" if checkpoint == CHECKPOINT else f"{Path(checkpoint).stem} epoch",
              generator_seed=config.seed + 1)  # fmt: skip
    fit(run, resume)
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
