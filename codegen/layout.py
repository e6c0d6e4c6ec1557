"""Weight layouts codegen produces for the kernels, never the kernels at run time.

`widen_weights`: a linear's int8 weights pre-widened to int16 in the order the DSP token blocks read them
(mcf_linear_layer.weight16 in mcf_fused.h): in each group of four inputs of a row, inputs 1 and 2 trade places,
so that one word holds (w0, w2) and the next (w1, w3), the pairs SXTB16 makes of an int8 word and the pairs the
widened activations are stored in; the in_ch % 4 leftovers keep their places. Twice the flash of the int8
weights, two instructions fewer per group of four inputs and four tokens (codegen.variants weighs that trade).
"""

from __future__ import annotations

import numpy as np


def weight16_order(in_ch: int) -> np.ndarray:
    """Stored position -> input index of one widened row (its own inverse: a swap within each group)."""
    k = np.arange(in_ch)
    grouped = k < in_ch - in_ch % 4
    swapped = (k & ~3) | ((k & 1) << 1) | ((k >> 1) & 1)
    return np.where(grouped, swapped, k)


def widen_weights(weight: np.ndarray) -> np.ndarray:
    """int8 [out_ch, in_ch] -> the int16 [out_ch, in_ch] layout of mcf_linear_layer.weight16."""
    if weight.dtype != np.int8 or weight.ndim != 2:
        raise ValueError(f"widen_weights takes int8 [out_ch, in_ch] weights, got {weight.dtype} {weight.shape}")
    return np.ascontiguousarray(weight[:, weight16_order(weight.shape[1])].astype(np.int16))


def is_widened(weight: np.ndarray) -> bool:
    """Whether a linear's weight const is in the widened layout (int16) rather than int8."""
    return weight.dtype == np.int16


def narrow_weights(weight16: np.ndarray) -> np.ndarray:
    """The inverse of widen_weights: the int8 [out_ch, in_ch] weights back."""
    return np.ascontiguousarray(weight16[:, weight16_order(weight16.shape[1])].astype(np.int8))
