"""ctypes mirrors of the kernel structs (mcf_kernels.h, mcf_fused.h) and guarded buffers, shared by the kernel tests."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

P = ctypes.c_void_p
I32 = ctypes.c_int32
GUARD = 16  # guard elements on each side of every array handed to the library


def int_fields(*names: str) -> list[tuple[str, type[ctypes.c_int32]]]:
    return [(n, ctypes.c_int32) for n in names]


class LinearDims(ctypes.Structure):
    _fields_ = int_fields("tokens", "in_ch", "out_ch")


class LinearParams(ctypes.Structure):
    _fields_ = int_fields("in_zp", "out_zp")


class ChannelQuant(ctypes.Structure):
    _fields_ = [("mult", P), ("shift", P)]


class PatchEmbedDims(ctypes.Structure):
    _fields_ = int_fields("height", "width", "channels", "patch", "out_ch", "blocks")


class AddParams(ctypes.Structure):
    _fields_ = int_fields("a_zp", "b_zp", "a_mult", "b_mult", "shift", "out_zp")


class Dims(ctypes.Structure):
    _fields_ = int_fields("tokens", "channels")


class LayerNormParams(ctypes.Structure):
    _fields_ = [("in_zp", ctypes.c_int32), ("eps", ctypes.c_int64), *int_fields("mult", "shift", "out_zp")]


class AttentionDims(ctypes.Structure):
    _fields_ = int_fields("tokens", "channels", "heads")


ATTENTION_FIELDS = ("q_zp", "k_zp", "v_zp", "score_mult", "score_shift", "score_zp", "out_mult", "out_shift", "out_zp")


class AttentionParams(ctypes.Structure):
    _fields_ = int_fields(*ATTENTION_FIELDS)


class PoolParams(ctypes.Structure):
    _fields_ = int_fields("in_zp", "mult", "shift", "out_zp")


def ptr(array: np.ndarray | None) -> int | None:
    return None if array is None else array.ctypes.data


@dataclass
class Guarded:
    """A flat array with GUARD random elements on each side; `data` is the view handed to C."""

    full: np.ndarray
    guards: np.ndarray

    @property
    def data(self) -> np.ndarray:
        return self.full[GUARD : len(self.full) - GUARD]

    def check_guards(self, what: str = "its array") -> None:
        current = np.concatenate([self.full[:GUARD], self.full[len(self.full) - GUARD :]])
        assert np.array_equal(current, self.guards), f"kernel wrote outside {what}"


def guarded(values: np.ndarray, rng: np.random.Generator) -> Guarded:
    """values (any integer dtype), flattened, between random guard elements of the same dtype."""
    flat = np.ascontiguousarray(values).reshape(-1)
    info = np.iinfo(flat.dtype)
    full = rng.integers(info.min, info.max, len(flat) + 2 * GUARD, dtype=flat.dtype, endpoint=True)
    full[GUARD : GUARD + len(flat)] = flat
    return Guarded(full, np.concatenate([full[:GUARD], full[GUARD + len(flat) :]]))


# The fused kernels (mcf_fused.h)


class LinearLayer(ctypes.Structure):
    _fields_ = [("params", LinearParams), ("quant", ChannelQuant), ("weight", P), ("weight16", P), ("bias", P)]


class FactoredLinear(ctypes.Structure):
    _fields_ = [("v", P), ("u", LinearLayer)]


class LayerNormLayer(ctypes.Structure):
    _fields_ = [("params", LayerNormParams), ("gamma", P), ("beta", P)]


class AttentionBlockDims(ctypes.Structure):
    _fields_ = int_fields("tokens", "channels", "heads", "qkv_rank", "proj_rank", "block_tokens")


class AttentionBlockParams(ctypes.Structure):
    _fields_ = [
        ("norm", LayerNormLayer),
        ("qkv_v", P),
        ("q", LinearLayer),
        ("k", LinearLayer),
        ("v", LinearLayer),
        ("attention", AttentionParams),
        ("exp_table", P),
        ("proj", FactoredLinear),
        ("residual", AddParams),
    ]


class MlpBlockDims(ctypes.Structure):
    _fields_ = int_fields("tokens", "channels", "hidden", "fc1_rank", "fc2_rank", "block_tokens")


class MlpBlockParams(ctypes.Structure):
    _fields_ = [
        ("norm", LayerNormLayer),
        ("fc1", FactoredLinear),
        ("gelu_table", P),
        ("fc2", FactoredLinear),
        ("residual", AddParams),
    ]
