"""Metadata mcuformer's exporter writes into ONNX files and the front end reads back (JSON strings)."""

from __future__ import annotations

import json
from typing import Any

DATASET = "mcuformer.dataset"  # {"name", "mean", "std", "classes"} of the data the model was trained on
CALIBRATION = "mcuformer.calibration"  # {tap: [min, max]}: the exact ranges the int8 model was quantized from
ARCH_NAME = "mcuformer.arch_name"
FORMAT = "mcuformer.onnx_format"  # "fp32" or "qdq"


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def loads(metadata: dict[str, str], key: str) -> Any | None:
    return json.loads(metadata[key]) if key in metadata else None
