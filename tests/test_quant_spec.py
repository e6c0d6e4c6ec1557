"""The int8 spec's scalar rules against independent formulations, and the quality of its approximations."""

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from mcuformer.quant import ops, spec
from mcuformer.quant.ptq import quantize_layernorm, quantize_linear
from mcuformer.quant.qmodel import QParams


def test_quantize_multiplier_represents_the_real_scale():
    rng = np.random.default_rng(0)
    for real in np.exp(rng.uniform(math.log(1e-9), math.log(1e8), 500)):
        mult, shift = spec.quantize_multiplier(float(real))
        if mult == 0:
            assert real < 2.0**spec.SHIFT_MIN
            continue
        assert 2**30 <= mult < 2**31 and spec.SHIFT_MIN <= shift <= spec.SHIFT_MAX
        assert abs(mult * 2.0 ** (shift - 31) / real - 1) < 2**-30
    with pytest.raises(ValueError):
        spec.quantize_multiplier(2.0**40)


def test_requantize_is_round_half_up_of_the_exact_product():
    rng = np.random.default_rng(1)
    acc = rng.integers(-(2**31), 2**31 - 1, 2000)
    for shift in (-32, -20, -5, 0, 3, 30):
        mult = int(rng.integers(2**30, 2**31))
        got = spec.requantize(acc, mult, shift)
        exact = [math.floor(Fraction(int(a) * mult, 2 ** (31 - shift)) + Fraction(1, 2)) for a in acc[:200]]
        assert got[:200].tolist() == exact


def test_isqrt64_is_exact():
    rng = np.random.default_rng(2)
    values = np.concatenate([rng.integers(0, 2**62, 3000), np.arange(0, 1000), [2**62 - 1, 4, 15, 16, 17]])
    roots = spec.isqrt64(values)
    assert roots.tolist() == [math.isqrt(int(v)) for v in values]


def test_add_multipliers_stay_below_the_int16_bound():
    for a, b, out in [(1.0, 0.5, 1.0), (0.02, 2e-6, 0.020000001), (3.0, 1.0, 0.1), (1e-4, 1e-4, 1.0)]:
        ma, mb, shift = spec.add_multipliers(a, b, out)
        assert max(ma, mb) < 2**spec.ADD_MULT_BITS and 1 <= shift <= 30
        assert abs(ma / 2**shift - a / out) <= 2 ** -(shift + 1) + 1e-12


def _quantize(x: np.ndarray) -> tuple[np.ndarray, QParams]:
    q = QParams(*spec.activation_qparams(float(x.min()), float(x.max())))
    return spec.saturate_int8(np.round(x / q.scale) + q.zero_point), q


def _dequantize(x: np.ndarray, q: QParams) -> np.ndarray:
    return (x.astype(np.float64) - q.zero_point) * q.scale


def test_linear_int8_is_close_to_float():
    rng = np.random.default_rng(3)
    x, w, b = rng.normal(size=(16, 40)), rng.normal(size=(24, 40)) * 0.2, rng.normal(size=24) * 0.1
    xq, xp = _quantize(x)
    y = _dequantize(xq, xp) @ w.T + b
    _, yp = _quantize(y)
    layer = quantize_linear(w, b, xp, yp)
    assert np.abs(_dequantize(layer(xq), yp) - y).max() < 3 * yp.scale


def test_integer_layernorm_is_close_to_float():
    rng = np.random.default_rng(4)
    norm = torch.nn.LayerNorm(48)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = rng.normal(0, 2, (64, 48)) + rng.normal(0, 3, (64, 1))
    xq, xp = _quantize(x)
    y = norm(torch.tensor(_dequantize(xq, xp), dtype=torch.float32)).detach().numpy().astype(np.float64)
    _, yp = _quantize(y)
    layer = quantize_layernorm(norm, xp, yp)
    assert np.abs(_dequantize(layer(xq), yp) - y).max() < 1.5 * yp.scale
    constant = np.full((2, 48), 7, np.int8)  # zero variance: no division by zero, output = beta
    assert ops.layernorm(constant, layer.gamma, layer.beta, xp.zero_point, 0, layer.mult, layer.shift,
                         yp.zero_point).shape == (2, 48)  # fmt: skip


def test_softmax_is_close_to_float_and_sums_to_about_one():
    rng = np.random.default_rng(5)
    scale = 0.05
    scores = rng.integers(-128, 128, (100, 37)).astype(np.int8)
    probs = (ops.softmax(scores, spec.exp_table(scale)).astype(np.int64) + 128) / 256
    exact = torch.softmax(torch.tensor(scores.astype(np.float64) * scale), -1).numpy()
    assert np.abs(probs - exact).max() <= 1.5 / 256
    assert np.abs(probs.sum(-1) - 1).max() < 37 / 256


def test_gelu_table_matches_float_gelu():
    table = spec.lut_table(spec.gelu, 0.05, 3, 0.03, -20)
    q = np.arange(-128, 128)
    real = torch.nn.functional.gelu(torch.tensor((q - 3) * 0.05)).numpy()
    expected = np.clip(np.round(real / 0.03) - 20, -128, 127)
    assert (table.astype(int) == expected).all()
    assert (ops.lut(q.astype(np.int8), table) == table).all()
