"""Scalar rules of the int8 spec: requantization, rounding, integer square root, tables.

Rounding rule ROUNDING: single rounding, round half up, as TFLite's TFLITE_SINGLE_ROUNDING and CMSIS-NN's
CMSIS_NN_USE_SINGLE_ROUNDING: requant(acc, m, s) = (acc * m + 2^(30 - s)) >> (31 - s) in 64-bit arithmetic,
an arithmetic (flooring) shift, then the output zero point is added and the result saturated to int8.
Every C kernel implements exactly these functions; tests compare bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

ROUNDING = "single-round-half-up"
INT8_MIN, INT8_MAX = -128, 127
SHIFT_MIN, SHIFT_MAX = -32, 30
ADD_MULT_BITS = 15  # residual-add multipliers are < 2^15 so that products stay in int32
LN_NORM_BITS = 10  # LayerNorm's normalised value is Q10 fixed point
LN_RECIP_BITS = 40  # LayerNorm divides by the standard deviation through a 2^40 / sd reciprocal
LN_GAMMA_MAX = 32767  # LayerNorm gamma is int16-ranged
EXP_BITS = 15  # softmax's exponent table is Q15: table[0] = exp(0) = 2^15
SOFTMAX_RECIP_BITS = 31  # the softmax reciprocal is 2^31 // sum
SOFTMAX_OUT_SHIFT = 23  # e * (2^31 / sum) >> 23 = 256 * e / sum
SOFTMAX_OUT_SCALE = 1.0 / 256.0  # softmax output grid: a fixed int8 grid, not a calibrated range
SOFTMAX_OUT_ZERO_POINT = INT8_MIN


def quantize_multiplier(real: float) -> tuple[int, int]:
    """real = m * 2^(s - 31) with m in [2^30, 2^31), s in [SHIFT_MIN, SHIFT_MAX]. Tiny reals give (0, 0)."""
    if real < 0 or not math.isfinite(real):
        raise ValueError(f"requantization scale must be finite and >= 0, got {real}")
    if real == 0:
        return 0, 0
    fraction, exponent = math.frexp(real)
    mult = round(fraction * (1 << 31))
    if mult == 1 << 31:
        mult //= 2
        exponent += 1
    if exponent < SHIFT_MIN:
        return 0, 0
    if exponent > SHIFT_MAX:
        raise ValueError(f"requantization scale {real} is too large (> 2^{SHIFT_MAX})")
    return mult, exponent


def requantize(acc: np.ndarray, mult: np.ndarray | int, shift: np.ndarray | int) -> np.ndarray:
    """int32 accumulators -> int64 rescaled values (before the zero point), per the rounding rule."""
    acc64 = np.asarray(acc, dtype=np.int64)
    mult64 = np.asarray(mult, dtype=np.int64)
    total = 31 - np.asarray(shift, dtype=np.int64)
    return (acc64 * mult64 + (np.int64(1) << (total - 1))) >> total


def saturate_int8(values: np.ndarray) -> np.ndarray:
    return np.clip(values, INT8_MIN, INT8_MAX).astype(np.int8)


def saturate_int32(values: np.ndarray) -> np.ndarray:
    return np.clip(values, -(2**31), 2**31 - 1).astype(np.int64)


def requantize_s8(acc: np.ndarray, mult: np.ndarray | int, shift: np.ndarray | int, out_zp: int) -> np.ndarray:
    return saturate_int8(requantize(acc, mult, shift) + out_zp)


def rshift_round(values: np.ndarray, shift: int) -> np.ndarray:
    """Round half up division by 2^shift (shift >= 1), on int64."""
    v = np.asarray(values, dtype=np.int64)
    return (v + (np.int64(1) << (shift - 1))) >> shift


def isqrt64(values: np.ndarray) -> np.ndarray:
    """floor(sqrt(v)) for 0 <= v < 2^63 - 2^33, exact (float estimate, then integer correction)."""
    v = np.asarray(values, dtype=np.int64)
    root = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    for _ in range(2):
        root = np.where(root * root > v, root - 1, root)
        root = np.where((root + 1) * (root + 1) <= v, root + 1, root)
    return root


def add_multipliers(scale_a: float, scale_b: float, scale_out: float) -> tuple[int, int, int]:
    """(mult_a, mult_b, shift) with mult_x = round(scale_x / scale_out * 2^shift) < 2^15, shift in [1, 30]."""
    ratio = max(scale_a, scale_b) / scale_out
    shift = 30
    while shift > 1 and round(ratio * (1 << shift)) >= (1 << ADD_MULT_BITS):
        shift -= 1
    mult_a, mult_b = (round(s / scale_out * (1 << shift)) for s in (scale_a, scale_b))
    if max(mult_a, mult_b) >= 1 << ADD_MULT_BITS:
        raise ValueError(f"add rescale ratio {ratio:.3g} is too large for the int8 spec")
    return mult_a, mult_b, shift


def lut_table(fn: np.ufunc | object, in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> np.ndarray:
    """256-entry int8 table of an element-wise function: table[q + 128] = quantized fn(dequantized q)."""
    q = np.arange(INT8_MIN, INT8_MAX + 1, dtype=np.float64)
    real = fn((q - in_zp) * in_scale)  # type: ignore[operator]
    return saturate_int8(np.round(real / out_scale) + out_zp)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, as torch.nn.functional.gelu."""
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """Tanh-approximate GELU, as torch.nn.functional.gelu(approximate="tanh")."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def exp_table(score_scale: float) -> np.ndarray:
    """Softmax's table: exp(-i * score_scale) in Q15 for a max-minus-score difference i in 0..255."""
    i = np.arange(256, dtype=np.float64)
    return np.round(np.exp(-i * score_scale) * (1 << EXP_BITS)).astype(np.int32)


def activation_qparams(low: float, high: float) -> tuple[float, int]:
    """Asymmetric int8 (scale, zero_point) covering [low, high] (widened to include 0)."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / 255.0 if high > low else 1.0
    zero_point = int(np.clip(round(INT8_MIN - low / scale), INT8_MIN, INT8_MAX))
    return scale, zero_point
