"""The int8 kernels in numpy: the reference every C kernel equals bit for bit.

Arrays are int8 with any leading batch dimensions; channels last. Each function's docstring is the spec
of the C kernel `mcf_<name>_s8` in firmware/kernels.
"""

from __future__ import annotations

import numpy as np

from mcuformer.quant import spec


def _i32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer matmul through float64 BLAS: every partial sum here is an integer below 2^53."""
    return np.rint(a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)


def linear(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    mult: np.ndarray,
    shift: np.ndarray,
    in_zp: int,
    out_zp: int,
) -> np.ndarray:
    """y[..., n] = sat8(requant(bias[n] + sum_k (x[..., k] - in_zp) * w[n, k], mult[n], shift[n]) + out_zp)."""
    acc = _matmul(_i32(x) - in_zp, _i32(weight).T) + _i32(bias)
    return spec.requantize_s8(acc, mult, shift, out_zp)


def patch_embed(
    image: np.ndarray,
    patch: int,
    weight: np.ndarray,
    bias: np.ndarray,
    mult: np.ndarray,
    shift: np.ndarray,
    in_zp: int,
    out_zp: int,
) -> np.ndarray:
    """image [..., H, W, C] -> tokens [..., (H/P)*(W/P), D]; patch vectors in (row, col, channel) order."""
    *lead, height, width, channels = image.shape
    grid_h, grid_w = height // patch, width // patch
    patches = image.reshape(*lead, grid_h, patch, grid_w, patch, channels)
    patches = np.moveaxis(patches, -3, -4)  # [..., gh, gw, P, P, C]
    patches = patches.reshape(*lead, grid_h * grid_w, patch * patch * channels)
    return linear(patches, weight, bias, mult, shift, in_zp, out_zp)


def add(
    a: np.ndarray,
    b: np.ndarray,
    a_zp: int,
    b_zp: int,
    a_mult: int,
    b_mult: int,
    shift: int,
    out_zp: int,
) -> np.ndarray:
    """out = sat8(rshift_round((a - a_zp) * a_mult + (b - b_zp) * b_mult, shift) + out_zp), elementwise."""
    acc = (_i32(a) - a_zp) * a_mult + (_i32(b) - b_zp) * b_mult
    return spec.saturate_int8(spec.rshift_round(acc, shift) + out_zp)


def lut(x: np.ndarray, table: np.ndarray) -> np.ndarray:
    """out = table[x + 128]: any element-wise int8 -> int8 function (GELU)."""
    return np.asarray(table, dtype=np.int8)[_i32(x) + 128]


def layernorm(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    in_zp: int,
    eps: int,
    mult: int,
    shift: int,
    out_zp: int,
) -> np.ndarray:
    """Integer LayerNorm over the last axis (D channels), per token:

    xi = x - in_zp; S = sum xi; Q = sum xi^2; var = D*Q - S^2 + eps (int64, = D^2 * variance)
    sd = max(isqrt(var), 1); inv = 2^40 // sd
    n = ((D*xi - S) * inv + 2^29) >> 30        (normalised value, Q10)
    acc = sat32(n * gamma + beta)              (gamma int16-ranged, beta int32)
    out = sat8(requant(acc, mult, shift) + out_zp)
    """
    dim = x.shape[-1]
    xi = _i32(x) - in_zp
    total = xi.sum(axis=-1, keepdims=True)
    squares = (xi * xi).sum(axis=-1, keepdims=True)
    var = dim * squares - total * total + eps
    sd = np.maximum(spec.isqrt64(var), 1)
    inv = (np.int64(1) << spec.LN_RECIP_BITS) // sd
    frac_shift = spec.LN_RECIP_BITS - spec.LN_NORM_BITS
    norm = ((dim * xi - total) * inv + (np.int64(1) << (frac_shift - 1))) >> frac_shift
    acc = spec.saturate_int32(norm * _i32(gamma) + _i32(beta))
    return spec.requantize_s8(acc, mult, shift, out_zp)


def softmax(scores: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Softmax over the last axis; output scale 1/256, zero point -128:

    e_j = table[max - s_j] (Q15); sum = sum e_j; inv = 2^31 // sum
    out_j = min(((e_j * inv + 2^22) >> 23) - 128, 127)
    """
    s = _i32(scores)
    e = _i32(table)[s.max(axis=-1, keepdims=True) - s]
    inv = (np.int64(1) << spec.SOFTMAX_RECIP_BITS) // e.sum(axis=-1, keepdims=True)
    prob = (e * inv + (np.int64(1) << (spec.SOFTMAX_OUT_SHIFT - 1))) >> spec.SOFTMAX_OUT_SHIFT
    return np.minimum(prob - 128, 127).astype(np.int8)


def attention(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    heads: int,
    q_zp: int,
    k_zp: int,
    v_zp: int,
    score_mult: int,
    score_shift: int,
    score_zp: int,
    exp_table: np.ndarray,
    out_mult: int,
    out_shift: int,
    out_zp: int,
) -> np.ndarray:
    """Multi-head attention on [..., T, D] int8 q, k, v (heads are contiguous column groups of D/heads):

    per head and query row t: s_j = sat8(requant(sum_c (q_tc - q_zp)(k_jc - k_zp), score_mult, score_shift)
    + score_zp); p = softmax(s, exp_table); out_tc = sat8(requant(sum_j (p_j + 128)(v_jc - v_zp), out_mult,
    out_shift) + out_zp). The 1/sqrt(head_dim) factor is folded into score_mult.
    """
    *lead, tokens, dim = q.shape
    head_dim = dim // heads

    def split(t: np.ndarray, zp: int) -> np.ndarray:
        return np.swapaxes((_i32(t) - zp).reshape(*lead, tokens, heads, head_dim), -2, -3)

    qh, kh, vh = split(q, q_zp), split(k, k_zp), split(v, v_zp)
    scores = spec.requantize_s8(_matmul(qh, np.swapaxes(kh, -1, -2)), score_mult, score_shift, score_zp)
    probs = _i32(softmax(scores, exp_table)) + 128
    out = spec.requantize_s8(_matmul(probs, vh), out_mult, out_shift, out_zp)
    return np.swapaxes(out, -2, -3).reshape(*lead, tokens, dim)


def mean_pool(x: np.ndarray, in_zp: int, mult: int, shift: int, out_zp: int) -> np.ndarray:
    """[..., T, D] -> [..., D]: sat8(requant(sum_t (x_t - in_zp), mult, shift) + out_zp)."""
    return spec.requantize_s8((_i32(x) - in_zp).sum(axis=-2), mult, shift, out_zp)
