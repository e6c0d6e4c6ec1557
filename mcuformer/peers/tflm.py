"""Convert a model to a full-integer int8 .tflite and run it in TensorFlow Lite Micro's interpreter.

TFLM's recording allocator prints how much of its tensor arena the model used: the peer number we compare our
planner's arena and SRAM with. Conversion uses the same calibration images our PTQ uses.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from mcuformer.errors import McuformerError
from mcuformer.model import VisionTransformer

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter is not ours to show

_ARENA_LINE = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")


class PeerError(McuformerError):
    pass


def _require(module: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise PeerError(
            f"the peer comparison needs {module}: pip install 'mcuformer[peers]' (tensorflow and tflite-micro)"
        ) from None


def convert_int8(model: VisionTransformer, calibration_pixels: np.ndarray) -> bytes:
    """model -> int8 .tflite bytes (int8 input and output). calibration_pixels: uint8 [N, H, W, C]."""
    _require("tensorflow")
    import tensorflow as tf

    from mcuformer.peers.keras_vit import keras_vit

    keras_model = keras_vit(model)

    def representative() -> Iterator[list[np.ndarray]]:
        for image in calibration_pixels:
            yield [image[None].astype(np.float32) / 255.0]

    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    result: list[bytes] = []
    log = _captured_output(lambda: result.append(converter.convert()))  # the converter prints pages of notes
    if not result:
        raise PeerError(f"TFLite conversion failed: {log.strip()[-500:]}")
    return result[0]


@dataclass(frozen=True)
class TflmArena:
    total_bytes: int  # what the application must give the interpreter
    head_bytes: int  # activations (the non-persistent, planned part)
    tail_bytes: int  # persistent: tensor and node structures, op data


def _captured_output(action: Callable[[], object]) -> str:
    """Text a C++ library prints on file descriptors 1 and 2 while `action()` runs."""
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = [os.dup(1), os.dup(2)]
        try:
            for fd in (1, 2):
                os.dup2(sink.fileno(), fd)
            action()
        finally:
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
        sink.seek(0)
        return sink.read().decode(errors="replace")


class TflmModel:
    """A .tflite model in TFLite Micro's Python interpreter (reference kernels), int8 in and out."""

    def __init__(self, flatbuffer: bytes) -> None:
        _require("tflite_micro")
        from tflite_micro import runtime

        self.flatbuffer = flatbuffer
        self.interpreter = runtime.Interpreter.from_bytes(flatbuffer, arena_size=max(len(flatbuffer) * 10, 1 << 20))
        details = self.interpreter.get_input_details(0)
        self.input_shape = tuple(int(n) for n in details["shape"])
        params = details["quantization_parameters"]
        self.input_scale, self.input_zero_point = float(params["scales"][0]), int(params["zero_points"][0])

    def quantize_pixels(self, images: np.ndarray) -> np.ndarray:
        """uint8 pixels -> the int8 the model's input expects (pixel / 255 at the input's scale)."""
        q = np.round(images.astype(np.float64) / 255.0 / self.input_scale) + self.input_zero_point
        return np.clip(q, -128, 127).astype(np.int8)

    def predict_logits(self, images: np.ndarray) -> np.ndarray:
        """int8 logits [N, classes] of uint8 images [N, H, W, C], one invoke per image."""
        rows = []
        for image in self.quantize_pixels(images):
            self.interpreter.set_input(image.reshape(self.input_shape), 0)
            self.interpreter.invoke()
            rows.append(np.asarray(self.interpreter.get_output(0)).reshape(-1).copy())
        return np.stack(rows)

    def arena(self) -> TflmArena:
        """Arena use after one inference, as TFLM's recording allocator reports it."""
        self.interpreter.invoke()
        text = _captured_output(self.interpreter.print_allocations)
        found = {kind: int(n) for kind, n in _ARENA_LINE.findall(text)}
        if set(found) != {"total", "head", "tail"}:
            raise PeerError(f"tflite-micro did not report its arena use; it printed: {text.strip()[:300]!r}")
        return TflmArena(found["total"], found["head"], found["tail"])
