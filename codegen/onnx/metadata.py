"""Metadata mcuformer's exporter writes into ONNX files and the front end reads back (JSON strings)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx

    from mcuformer.checkpoint import ModelFile

DATASET = "mcuformer.dataset"  # {"name", "mean", "std", "classes"} of the data the model was trained on
CALIBRATION = "mcuformer.calibration"  # {tap: [min, max]}: the exact ranges the int8 model was quantized from
ARCH_NAME = "mcuformer.arch_name"
FORMAT = "mcuformer.onnx_format"  # "fp32" or "qdq"


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def loads(metadata: dict[str, str], key: str) -> Any | None:
    return json.loads(metadata[key]) if key in metadata else None


def write(model: onnx.ModelProto, model_file: ModelFile, kind: str) -> None:
    """Stores what `compile` needs to rebuild the int8 model exactly: dataset, calibration ranges, name, kind."""
    ds = model_file.dataset
    entries = {
        FORMAT: kind,
        ARCH_NAME: dumps(model_file.arch.name),
        DATASET: dumps(
            {"name": ds.name, "mean": list(ds.mean), "std": list(ds.std), "classes": list(ds.classes)}
        ),  # fmt: skip
        CALIBRATION: dumps({k: list(v) for k, v in model_file.calibration.items()}),
    }
    for key, value in entries.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
