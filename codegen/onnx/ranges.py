"""Calibration ranges read from a QDQ model's QuantizeLinear/DequantizeLinear pairs (no calibration data needed).

Each calibration tap of mcuformer's ViT is mapped by the matcher to the ONNX tensors that hold it; a QDQ pair on
one of them (or on a layout op's input or output next to it: quantization per tensor commutes with layout)
gives its (scale, zero point), which is turned back into the range that reproduces exactly those parameters.
"""

from __future__ import annotations

from mcuformer.codegen.onnx.errors import OnnxImportError
from mcuformer.codegen.onnx.graph import OnnxGraph
from mcuformer.quant import spec
from mcuformer.quant.ptq import Calibration


def _qparams_near(g: OnnxGraph, tensors: list[str]) -> tuple[float, int] | None:
    for name in tensors:
        if not name:
            continue
        source, path = g.skip_layout_back(name)
        for candidate in [name, source, *(out for node in path for out in node.output)]:
            if candidate in g.qparams:
                return g.qparams[candidate]
    return None


def range_of(scale: float, zero_point: int) -> tuple[float, float]:
    """A (low, high) range whose int8 quantization is exactly (scale, zero_point) under spec.activation_qparams."""
    low = (spec.INT8_MIN - zero_point) * scale
    high = low + 255.0 * scale
    for _ in range(8):  # float rounding can move the recomputed scale by an ulp: nudge until it reproduces
        got = spec.activation_qparams(low, high)
        if got == (scale, zero_point):
            return low, high
        high = high * (1.0 + 1e-16) if got[0] < scale else high * (1.0 - 1e-16)
    return low, high


def calibration_from_qdq(g: OnnxGraph, taps: dict[str, list[str]], required: list[str]) -> Calibration:
    """Ranges for every tap in `required` from the graph's QDQ pairs; a missing one is named in the error."""
    calibration: Calibration = {}
    for tap in required:
        found = _qparams_near(g, taps.get(tap, []))
        if found is None:
            tensor = next((t for t in taps.get(tap, []) if t), "?")
            raise OnnxImportError(f"the QDQ model quantizes no tensor at {tap} (ONNX tensor {tensor}): pass "
                                  "--calib <dataset> to calibrate on images instead")  # fmt: skip
        calibration[tap] = range_of(*found)
    return calibration
