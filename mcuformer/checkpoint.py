"""model.pt: one self-describing file (format version, arch, weights, calibration, dataset, metrics)."""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mcuformer import __version__
from mcuformer.arch import ArchConfig, ArchError
from mcuformer.errors import McuformerError
from mcuformer.model import VisionTransformer
from mcuformer.quant.ptq import Calibration

FORMAT = "mcuformer.model"
FORMAT_VERSION = 1


class ModelFileError(McuformerError):
    pass


@dataclass(frozen=True)
class DatasetMeta:
    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]


@dataclass
class ModelFile:
    model: VisionTransformer
    calibration: Calibration
    dataset: DatasetMeta
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def arch(self) -> ArchConfig:
        return self.model.arch


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save through a temporary file and a rename: an interrupt never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_model(file: ModelFile, path: str | Path) -> None:
    atomic_save(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "mcuformer_version": __version__,
            "arch": file.arch.to_dict(),
            "state_dict": file.model.state_dict(),
            "calibration": {k: list(v) for k, v in file.calibration.items()},
            "dataset": {
                "name": file.dataset.name,
                "mean": list(file.dataset.mean),
                "std": list(file.dataset.std),
                "classes": list(file.dataset.classes),
            },
            "metrics": dict(file.metrics),
        },
        Path(path),
    )


def load_model(path: str | Path) -> ModelFile:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
        # PyTorch's own text (weights_only advice, zip internals) would not help here: name the kind of failure.
        raise ModelFileError(
            f"model file {path} is corrupt or not a PyTorch file ({type(err).__name__}): "
            "write it again with `mcuformer train` or `mcuformer search`"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelFileError(
            f"{path} is not an mcuformer model file (a plain state_dict or another tool's checkpoint?); "
            "create one with `mcuformer train` or `mcuformer search`"
        )
    if data.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has model format version {data.get('format_version')}, this mcuformer reads {FORMAT_VERSION}"
        )
    try:
        arch = ArchConfig.from_dict(data["arch"])
        ds = data["dataset"]
        dataset = DatasetMeta(ds["name"], tuple(ds["mean"]), tuple(ds["std"]), tuple(ds["classes"]))
        model = VisionTransformer(arch, dataset.mean, dataset.std)
        model.load_state_dict(data["state_dict"])
        calibration = {k: (float(v[0]), float(v[1])) for k, v in data["calibration"].items()}
    except (KeyError, TypeError, RuntimeError, ArchError) as err:
        raise ModelFileError(f"model file {path} is damaged: {str(err).splitlines()[0][:160]}") from None
    model.eval()
    return ModelFile(model, calibration, dataset, {k: float(v) for k, v in data.get("metrics", {}).items()})
