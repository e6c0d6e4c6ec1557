"""`mcuformer export model.pt --onnx out.onnx`: the fp32 model, or its int8 form as a QDQ graph.

fp32: PyTorch's exporter (opset 17) on mcuformer's ViT, normalisation included: the input is pixels in [0, 1].
QDQ (`qdq.py`): the int8 model as ONNX QuantizeLinear/DequantizeLinear around float ops, for tools that
read quantized ONNX. Both carry metadata (dataset, exact calibration ranges) so that the ONNX front end
re-imports them into the same model.pt.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch

from mcuformer.checkpoint import ModelFile, load_model
from mcuformer.codegen.onnx import metadata

OPSET = 17
INPUT_NAME = "pixels"
OUTPUT_NAME = "logits"


def export_fp32(model_file: ModelFile, out: str | Path) -> Path:
    """The fp32 ViT as ONNX (input `pixels` [batch, C, H, W] in [0, 1], output `logits`)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    arch = model_file.arch
    example = torch.zeros(1, arch.channels, arch.image_size, arch.image_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(
            model_file.model.eval(), (example,), str(out), dynamo=False, opset_version=OPSET,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )  # fmt: skip
    model = onnx.load(str(out))
    metadata.write(model, model_file, "fp32")
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out


def export_model(model_path: str | Path, out: str | Path, qdq: bool = False) -> Path:
    model_file = load_model(model_path)
    if qdq:
        from mcuformer.codegen.onnx.qdq import export_qdq

        return export_qdq(model_file, out)
    return export_fp32(model_file, out)
