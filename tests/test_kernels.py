"""The portable C kernels equal the numpy reference (mcuformer.quant.ops) bit for bit.

Random cases (fixed seeds) run two ways:
  - through ctypes against the kernels built as one shared library (-O2, -Werror), with guard bytes around
    every array: a kernel that writes outside its output, or into an input it must not touch, fails;
  - through firmware/kernels/test/mcf_kernel_driver.c built with AddressSanitizer + UBSan: a standalone
    executable (no LD_PRELOAD of libasan into Python needed) that reads the cases from stdin, puts every
    array in its own exact-size heap block and aborts on any out-of-bounds access or undefined behaviour.
Plus argument checking. (The scratch size: test_scratch_sizes.py; the builds: test_kernel_builds.py.)
"""

from __future__ import annotations

import ctypes
import math
import struct
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from kernel_ctypes import (
    I32,
    AddParams,
    AttentionDims,
    AttentionParams,
    ChannelQuant,
    Dims,
    LayerNormParams,
    LinearDims,
    LinearParams,
    P,
    PatchEmbedDims,
    PoolParams,
    guarded,
    ptr,
)

from mcuformer.codegen.host_build import KERNEL_INCLUDE, compile_host, kernel_sources
from mcuformer.codegen.layout import widen_weights
from mcuformer.firmware import KERNELS_DIR
from mcuformer.quant import ops, spec

DRIVER_SOURCE = KERNELS_DIR / "test" / "mcf_kernel_driver.c"
CASES = 100  # random cases per kernel through ctypes
SANITIZED_CASES = 25  # random cases per kernel through the sanitized driver
OPS = ("linear", "patch_embed", "add", "lut", "layernorm", "softmax", "attention", "mean_pool", "copy")
DRIVER_OPS = {name: i for i, name in enumerate((*OPS, "isqrt64"))}
INT32_MAX = 2**31 - 1


# ----------------------------------------------------------------------------------------- ctypes binding


SIGNATURES: dict[str, list[object]] = {
    "mcf_linear_s8": [P, P, P, P, P, P, P],
    "mcf_linear_w16_s8": [P, P, P, P, P, P, P],
    "mcf_patch_embed_s8": [P, P, P, P, P, P, P],
    "mcf_add_s8": [P, P, P, P, I32],
    "mcf_lut_s8": [P, P, P, I32],
    "mcf_layernorm_s8": [P, P, P, P, P, P],
    "mcf_softmax_s8": [P, P, P, I32],
    "mcf_attention_s8_get_buffer_size": [P],
    "mcf_attention_s8": [P, P, P, P, P, P, P, P],
    "mcf_mean_pool_s8": [P, P, P, P],
    "mcf_copy_s8": [P, P, I32],
}


@pytest.fixture(scope="session")
def lib(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    out = tmp_path_factory.mktemp("kernels") / "libmcf_kernels.so"
    library = ctypes.CDLL(str(compile_host(kernel_sources(), out, include_dirs=[KERNEL_INCLUDE], shared=True)))
    for name, argtypes in SIGNATURES.items():
        fn = getattr(library, name)
        fn.argtypes = argtypes
        fn.restype = ctypes.c_int32
    return library


@pytest.fixture(scope="session")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    exe = tmp_path_factory.mktemp("driver") / "mcf_kernel_driver_san"
    return compile_host([*kernel_sources(), DRIVER_SOURCE], exe, include_dirs=[KERNEL_INCLUDE], sanitize=True)


def invoke(lib: ctypes.CDLL, op: str, s: list[int], a: Sequence[np.ndarray | None], out: np.ndarray | None) -> int:
    """Calls kernel `op` as the driver's run() does: s = the scalars, a = the arrays (None -> NULL)."""
    p = [ptr(x) for x in a]
    o = ptr(out)
    ref = ctypes.byref
    if op == "linear":
        quant = ChannelQuant(p[3], p[4])
        return lib.mcf_linear_s8(ref(LinearDims(*s[:3])), ref(LinearParams(*s[3:5])), ref(quant), *p[:3], o)
    if op == "patch_embed":
        quant = ChannelQuant(p[3], p[4])
        pe_dims = PatchEmbedDims(*s[:5])
        return lib.mcf_patch_embed_s8(ref(pe_dims), ref(LinearParams(*s[5:7])), ref(quant), *p[:3], o)
    if op == "add":
        return lib.mcf_add_s8(ref(AddParams(*s[:6])), p[0], p[1], o, s[6])
    if op == "lut":
        return lib.mcf_lut_s8(p[0], p[1], o, s[0])
    if op == "layernorm":
        return lib.mcf_layernorm_s8(ref(Dims(*s[:2])), ref(LayerNormParams(*s[2:7])), *p[:3], o)
    if op == "softmax":
        return lib.mcf_softmax_s8(p[0], p[1], o, s[0])
    if op == "attention":
        dims = AttentionDims(*s[:3])
        size = lib.mcf_attention_s8_get_buffer_size(ref(dims))
        scratch = guarded(np.zeros(max(size, 0), np.int8), np.random.default_rng(size))
        status = lib.mcf_attention_s8(ref(dims), ref(AttentionParams(*s[3:12])), *p[:4], o, ptr(scratch.data))
        scratch.check_guards()
        return status
    if op == "mean_pool":
        return lib.mcf_mean_pool_s8(ref(Dims(*s[:2])), ref(PoolParams(*s[2:6])), p[0], o)
    if op == "copy":
        return lib.mcf_copy_s8(p[0], o, s[0])
    raise AssertionError(op)


# ---------------------------------------------------------------------------------------------- cases


@dataclass
class Case:
    """One kernel call: scalars and arrays in the driver's order, and the reference's output."""

    op: str
    scalars: list[int]
    arrays: list[np.ndarray]
    expected: np.ndarray
    alias: int = -1  # the output is arrays[alias] (in-place call)
    label: str = field(default="")


def i8(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.integers(-128, 127, shape, dtype=np.int8, endpoint=True)


def zero_point(rng: np.random.Generator) -> int:
    return int(rng.choice([-128, 127, 0, int(rng.integers(-128, 128))]))


def requant_params(rng: np.random.Generator, magnitude: float) -> tuple[int, int]:
    """(mult, shift) for accumulators of typical size `magnitude`.

    Mostly a scale that maps them onto a useful part of int8 (sometimes a power of two, whose multiplier
    2^30 makes round-half-up ties frequent); else a realistic scale in [1e-6, 100], a raw multiplier over
    the whole shift range [-32, 30], or zero.
    """
    pick = rng.random()
    if pick < 0.55:
        scale = float(10 ** rng.uniform(0.3, 2.5)) / max(magnitude, 1.0)
        if rng.random() < 0.3:
            scale = 2.0 ** round(math.log2(scale))
        return spec.quantize_multiplier(scale)
    if pick < 0.8:
        return spec.quantize_multiplier(float(10 ** rng.uniform(-6, 2)))
    if pick < 0.95:
        return int(rng.integers(2**30, 2**31)), int(rng.integers(spec.SHIFT_MIN, spec.SHIFT_MAX + 1))
    return 0, 0


def channel_quant(rng: np.random.Generator, acc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel (last axis of acc) requantization: int32 multipliers, one-byte shifts (mcf_channel_quant)."""
    pairs = [requant_params(rng, float(np.abs(acc[..., n]).mean())) for n in range(acc.shape[-1])]
    return np.array([m for m, _ in pairs], np.int32), np.array([s for _, s in pairs], np.int8)


def bias(rng: np.random.Generator, n: int, limit: int | None = None) -> np.ndarray:
    """int32 biases; |bias| <= 2^30 keeps bias + dot product inside int32 (the kernels' contract)."""
    limit = limit or int(rng.choice([2**8, 2**14, 2**20, 2**30]))
    return rng.integers(-limit, limit, n, dtype=np.int32, endpoint=True)


def accumulators(x: np.ndarray, w: np.ndarray, b: np.ndarray, in_zp: int) -> np.ndarray:
    """linear's int32 accumulators, only to pick requantization scales."""
    return (x.astype(np.int64) - in_zp) @ w.astype(np.int64).T + b


def gen_linear(rng: np.random.Generator, big: bool = False) -> Case:
    tokens, in_ch, out_ch = (65, 96, 48) if big else (int(rng.integers(1, 10)), *rng.integers(1, 72, 2))
    x, w, b = i8(rng, tokens, in_ch), i8(rng, out_ch, in_ch), bias(rng, out_ch)
    in_zp, out_zp = zero_point(rng), zero_point(rng)
    mult, shift = channel_quant(rng, accumulators(x, w, b, in_zp))
    expected = ops.linear(x, w, b, mult, shift, in_zp, out_zp)
    return Case("linear", [tokens, in_ch, out_ch, in_zp, out_zp], [x, w, b, mult, shift], expected)


def gen_patch_embed(rng: np.random.Generator, big: bool = False) -> Case:
    if big:
        patch, grid_h, grid_w, channels, out_ch = 4, 7, 7, 1, 64
    else:
        patch, grid_h, grid_w, channels, out_ch = (int(v) for v in rng.integers(1, [5, 5, 5, 4, 24]))
    height, width = patch * grid_h, patch * grid_w
    image = i8(rng, height, width, channels)
    w, b = i8(rng, out_ch, patch, patch, channels), bias(rng, out_ch)
    in_zp, out_zp = zero_point(rng), zero_point(rng)
    patches = np.moveaxis(image.reshape(grid_h, patch, grid_w, patch, channels), 2, 1).reshape(grid_h * grid_w, -1)
    mult, shift = channel_quant(rng, accumulators(patches, w.reshape(out_ch, -1), b, in_zp))
    expected = ops.patch_embed(image, patch, w.reshape(out_ch, -1), b, mult, shift, in_zp, out_zp)
    scalars = [height, width, channels, patch, out_ch, in_zp, out_zp]
    return Case("patch_embed", scalars, [image, w, b, mult, shift], expected)


def gen_add(rng: np.random.Generator, big: bool = False) -> Case:
    size = 65 * 64 if big else int(rng.integers(1, 300))
    a, b = i8(rng, size), i8(rng, size)
    if rng.random() < 0.7:
        while True:
            scales = 10 ** rng.uniform(-3, 0, 3)
            try:
                a_mult, b_mult, shift = spec.add_multipliers(*(float(s) for s in scales))
                break
            except ValueError:
                continue
    else:
        a_mult, b_mult = (int(m) for m in rng.integers(0, 2**spec.ADD_MULT_BITS, 2))
        shift = int(rng.integers(1, 31))
    zps = [zero_point(rng) for _ in range(3)]
    expected = ops.add(a, b, zps[0], zps[1], a_mult, b_mult, shift, zps[2])
    alias = int(rng.choice([-1, 0, 1]))
    scalars = [zps[0], zps[1], a_mult, b_mult, shift, zps[2], size]
    return Case("add", scalars, [a, b], expected, alias)


def gen_lut(rng: np.random.Generator, big: bool = False) -> Case:
    size = 65 * 256 if big else int(rng.integers(1, 500))
    x = i8(rng, size)
    if rng.random() < 0.5:
        scale_in, scale_out = 10 ** rng.uniform(-2, -0.5, 2)
        table = spec.lut_table(spec.gelu, float(scale_in), zero_point(rng), float(scale_out), zero_point(rng))
    else:
        table = i8(rng, 256)
    return Case("lut", [size], [x, table], ops.lut(x, table), int(rng.choice([-1, 0])))


def gen_layernorm(rng: np.random.Generator, big: bool = False) -> Case:
    tokens, channels = (65, 64) if big else (int(rng.integers(1, 7)), int(rng.integers(1, 101)))
    kind = rng.integers(0, 5)
    if kind == 4:  # 1 to 3 channels: var in 0..3 with a small eps, sd clamped to 1
        channels = int(rng.integers(1, 4))
    if kind == 0:  # constant rows: variance 0
        x = np.repeat(i8(rng, tokens, 1), channels, axis=1)
    elif kind in (1, 4):  # narrow rows: tiny variance, large normalised values
        x = np.clip(i8(rng, tokens, 1).astype(np.int64) + rng.integers(-1, 2, (tokens, channels)), -128, 127)
        x = x.astype(np.int8)
    else:
        x = i8(rng, tokens, channels)
    gamma_limit = int(rng.choice([2**6, 2**11, spec.LN_GAMMA_MAX]))
    gamma = rng.integers(-gamma_limit - 1, gamma_limit, channels, dtype=np.int16, endpoint=True)  # int16 in C
    beta = bias(rng, channels, int(rng.choice([2**10, 2**20, 2**31 - 1])))  # full range: sat32 matters
    eps = int(rng.choice([0, 1, 2, 3, int(rng.integers(0, 2**20)), int(rng.integers(0, 2**62)), 2**62]))
    if kind == 4:
        beta, eps = bias(rng, channels, 2**10), int(rng.integers(0, 4))
    mult, shift = requant_params(rng, 1024 * gamma_limit / 2 + float(np.abs(beta).mean()))
    in_zp, out_zp = zero_point(rng), zero_point(rng)
    expected = ops.layernorm(x, gamma, beta, in_zp, eps, mult, shift, out_zp)
    scalars = [tokens, channels, in_zp, eps, mult, shift, out_zp]
    return Case("layernorm", scalars, [x, gamma, beta], expected, int(rng.choice([-1, 0])))


def exp_table(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.8:  # from tiny score scales (flat table) to huge ones (mostly zeros)
        return spec.exp_table(float(10 ** rng.uniform(-3, 1)))
    table = rng.integers(0, 2**20, 256, dtype=np.int32)  # any non-negative table
    table[0] = max(int(table[0]), 1)
    return table


def gen_softmax(rng: np.random.Generator, big: bool = False) -> Case:
    length = 1000 if big else int(rng.integers(1, 300))
    kind = rng.integers(0, 3)
    if kind == 0:  # all equal
        x = np.full(length, rng.integers(-128, 128), np.int8)
    elif kind == 1:  # huge spread
        x = rng.choice(np.array([-128, 127], np.int8), length)
    else:
        x = i8(rng, length)
    table = exp_table(rng)
    return Case("softmax", [length], [x, table], ops.softmax(x, table), int(rng.choice([-1, 0])))


def gen_attention(rng: np.random.Generator, big: bool = False) -> Case:
    if big:
        tokens, heads, head_dim = 65, 4, 16
    else:
        tokens, heads, head_dim = int(rng.integers(1, 13)), int(rng.integers(1, 5)), int(rng.integers(1, 10))
    channels = heads * head_dim
    q, k, v = i8(rng, tokens, channels), i8(rng, tokens, channels), i8(rng, tokens, channels)
    score_scale = float(10 ** rng.uniform(-2.5, 0))
    if rng.random() < 0.7:  # realistic: q, k scales ~ 0.05, head_dim folded in
        score_mult, score_shift = spec.quantize_multiplier(0.0025 / math.sqrt(head_dim) / score_scale)
        out_mult, out_shift = spec.quantize_multiplier(float(10 ** rng.uniform(-3.5, -1.5)))
    else:
        score_mult, score_shift = requant_params(rng, 80.0 * 80.0 * math.sqrt(head_dim))
        out_mult, out_shift = requant_params(rng, 256.0 * 80.0)
    table = spec.exp_table(score_scale) if rng.random() < 0.8 else exp_table(rng)
    q_zp, k_zp, v_zp, score_zp, out_zp = (zero_point(rng) for _ in range(5))
    params = [q_zp, k_zp, v_zp, score_mult, score_shift, score_zp, out_mult, out_shift, out_zp]
    expected = ops.attention(
        q, k, v, heads, q_zp, k_zp, v_zp, score_mult, score_shift, score_zp, table, out_mult, out_shift, out_zp
    )
    alias = int(rng.choice([-1, 0]))
    return Case("attention", [tokens, channels, heads, *params], [q, k, v, table], expected, alias)


def gen_mean_pool(rng: np.random.Generator, big: bool = False) -> Case:
    tokens, channels = (65, 64) if big else (int(rng.integers(1, 60)), int(rng.integers(1, 41)))
    x = i8(rng, tokens, channels)
    in_zp, out_zp = zero_point(rng), zero_point(rng)
    mult, shift = requant_params(rng, float(np.abs(x.astype(np.int64) - in_zp).sum(axis=0).mean()))
    expected = ops.mean_pool(x, in_zp, mult, shift, out_zp)
    return Case("mean_pool", [tokens, channels, in_zp, mult, shift, out_zp], [x], expected)


def gen_copy(rng: np.random.Generator, big: bool = False) -> Case:
    size = 4096 if big else int(rng.integers(1, 200))
    x = i8(rng, size)
    return Case("copy", [size], [x], x.copy())


GENERATORS: dict[str, Callable[..., Case]] = {
    "linear": gen_linear,
    "patch_embed": gen_patch_embed,
    "add": gen_add,
    "lut": gen_lut,
    "layernorm": gen_layernorm,
    "softmax": gen_softmax,
    "attention": gen_attention,
    "mean_pool": gen_mean_pool,
    "copy": gen_copy,
}


def cases(op: str, count: int, seed: int) -> list[Case]:
    rng = np.random.default_rng([seed, OPS.index(op)])
    return [GENERATORS[op](rng, big=True), *(GENERATORS[op](rng) for _ in range(count - 1))]


def run_ctypes(lib: ctypes.CDLL, case: Case, rng: np.random.Generator) -> np.ndarray:
    """Runs a case with guard elements around every array; checks the guards and the untouched inputs."""
    arrays = [guarded(a, rng) for a in case.arrays]
    out = arrays[case.alias] if case.alias >= 0 else guarded(np.zeros(case.expected.size, np.int8), rng)
    status = invoke(lib, case.op, case.scalars, [a.data for a in arrays], out.data)
    assert status == 0, f"{case.op} returned {status}"
    for i, (before, after) in enumerate(zip(case.arrays, arrays, strict=True)):
        after.check_guards()
        if i != case.alias:
            assert np.array_equal(after.data, before.reshape(-1)), f"{case.op} wrote into input {i}"
    out.check_guards()
    return out.data[: case.expected.size].copy()


# ---------------------------------------------------------------------------------------------- tests


def test_linear_with_widened_weights_equals_reference(lib: ctypes.CDLL) -> None:
    """mcf_linear_w16_s8 on the linear cases, its weights widened as codegen lays them out (codegen.layout): the
    reference's outputs; MCF_ERR_ARG without weights."""
    ref = ctypes.byref
    for i, case in enumerate(cases("linear", CASES, seed=1)):
        s, (x, w, b, mult, shift) = case.scalars, case.arrays
        w16 = widen_weights(w)
        out = np.zeros(case.expected.size, np.int8)
        args = (ref(LinearDims(*s[:3])), ref(LinearParams(*s[3:5])), ref(ChannelQuant(ptr(mult), ptr(shift))), ptr(x))
        assert lib.mcf_linear_w16_s8(*args, ptr(w16), ptr(b), ptr(out)) == 0, i
        assert np.array_equal(out, case.expected.reshape(-1)), f"case {i} (scalars {s})"
        assert lib.mcf_linear_w16_s8(*args, None, ptr(b), ptr(out)) == -1  # MCF_ERR_ARG


@pytest.mark.parametrize("op", OPS)
def test_kernel_equals_reference(lib: ctypes.CDLL, op: str) -> None:
    rng = np.random.default_rng(1234)
    all_cases = cases(op, CASES, seed=1)
    in_place = {c.alias >= 0 for c in all_cases}
    assert in_place == ({False} if op in ("linear", "patch_embed", "mean_pool", "copy") else {False, True})
    for i, case in enumerate(all_cases):
        got = run_ctypes(lib, case, rng)
        want = case.expected.reshape(-1)
        mismatch = np.flatnonzero(got != want)
        assert mismatch.size == 0, (
            f"{op} case {i} (scalars {case.scalars}, alias {case.alias}): {mismatch.size} of {want.size} "
            f"differ, first at {mismatch[0]}: C {got[mismatch[0]]} vs numpy {want[mismatch[0]]}"
        )


def test_cases_cover_the_edges() -> None:
    """The random cases reach what they claim to: extreme shifts, saturation, constant LayerNorm rows."""
    linear = cases("linear", CASES, seed=1)
    shifts = np.concatenate([c.arrays[4] for c in linear])
    assert shifts.min() <= -25 and shifts.max() >= 25
    for op in ("linear", "patch_embed", "layernorm", "attention", "mean_pool"):
        outputs = np.concatenate([c.expected.reshape(-1) for c in cases(op, CASES, seed=1)])
        inside = (outputs > -128) & (outputs < 127)
        assert (outputs == -128).any() and (outputs == 127).any(), op
        assert inside.mean() > 0.3 and len(np.unique(outputs)) > 150, op  # not all saturated / constant
    assert {c.scalars[0] for c in linear} >= {1}
    assert any(c.scalars[1] % 2 == 1 for c in linear)
    norms = cases("layernorm", CASES, seed=1)
    assert any(np.all(c.arrays[0] == c.arrays[0][:, :1]) and c.scalars[3] == 0 for c in norms)
    assert any(c.scalars[3] == 2**62 for c in norms)
    attention = cases("attention", CASES, seed=1)
    assert {c.scalars[2] for c in attention} == {1, 2, 3, 4}
    assert any(c.alias == 0 and c.scalars[2] > 1 and c.scalars[0] > 1 for c in attention)


def test_softmax_special_rows(lib: ctypes.CDLL) -> None:
    table = spec.exp_table(0.05)
    rows = {
        "single": np.array([5], np.int8),
        "equal": np.full(7, -3, np.int8),
        "spread": np.array([127, -128, -128, 127, -128], np.int8),
        "one hot": np.array([-128] * 9 + [127], np.int8),
    }
    for name, row in rows.items():
        out = np.zeros_like(row)
        assert lib.mcf_softmax_s8(ptr(row), ptr(table), ptr(out), row.size) == 0
        assert np.array_equal(out, ops.softmax(row, table)), name
    out = np.zeros(1, np.int8)
    lib.mcf_softmax_s8(ptr(rows["single"]), ptr(table), ptr(out), 1)
    assert out[0] == 127  # a lone value has probability 1
    zeros = np.zeros(256, np.int32)  # an all-zero table: numpy's 2^31 // 0 is 0, so is the kernel's
    row = i8(np.random.default_rng(3), 20)
    with np.errstate(divide="ignore"):
        want = ops.softmax(row, zeros)
    assert lib.mcf_softmax_s8(ptr(row), ptr(zeros), ptr(out := np.zeros(20, np.int8)), 20) == 0
    assert np.array_equal(out, want)


def test_attention_shared_inputs(lib: ctypes.CDLL) -> None:
    """q, k, v may be one buffer (read only); output may be q while k and v share another buffer."""
    rng = np.random.default_rng(5)
    tokens, heads, head_dim = 9, 3, 5
    channels = heads * head_dim
    dims = AttentionDims(tokens, channels, heads)
    (score_mult, score_shift), (out_mult, out_shift) = spec.quantize_multiplier(0.004), spec.quantize_multiplier(0.01)
    params = [3, -7, 11, score_mult, score_shift, -5, out_mult, out_shift, 2]
    table = spec.exp_table(0.08)
    scratch = np.zeros(lib.mcf_attention_s8_get_buffer_size(ctypes.byref(dims)), np.int8)
    x, y = i8(rng, tokens, channels), i8(rng, tokens, channels)

    def call(q: np.ndarray, k: np.ndarray, v: np.ndarray, out: np.ndarray) -> int:
        return lib.mcf_attention_s8(
            ctypes.byref(dims), ctypes.byref(AttentionParams(*params)), ptr(q), ptr(k), ptr(v), ptr(table),
            ptr(out), ptr(scratch),
        )  # fmt: skip

    out = np.zeros_like(x)
    assert call(x, x, x, out) == 0

    def reference(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        return ops.attention(q, k, v, heads, 3, -7, 11, score_mult, score_shift, -5, table, out_mult, out_shift, 2)

    assert np.array_equal(out, reference(x, x, x))
    want = reference(x, y, y)
    assert call(x, y, y, x) == 0  # in place over q
    assert np.array_equal(x, want)


def test_copy_overlapping(lib: ctypes.CDLL) -> None:
    base = np.arange(100, dtype=np.int8)
    for src, dst, size in [(0, 10, 60), (10, 0, 60), (5, 5, 50), (0, 1, 99), (1, 0, 99)]:
        buf = base.copy()
        want = base.copy()
        want[dst : dst + size] = base[src : src + size]
        assert lib.mcf_copy_s8(buf.ctypes.data + src, buf.ctypes.data + dst, size) == 0
        assert np.array_equal(buf, want), (src, dst, size)


def test_invalid_arguments(lib: ctypes.CDLL) -> None:
    """Every kernel answers MCF_ERR_ARG (-1) and writes nothing for NULLs, bad dims and bad parameters."""
    rng = np.random.default_rng(7)
    base = {op: GENERATORS[op](rng) for op in OPS}
    for case in base.values():  # the unmodified calls succeed
        assert invoke(lib, case.op, case.scalars, case.arrays, np.zeros(case.expected.size, np.int8)) == 0

    def rejects(
        op: str, scalars: list[int] | None = None, arrays: Sequence[np.ndarray | None] | None = None, out: bool = True
    ) -> None:
        case = base[op]
        out_buf = np.full(max(case.expected.size, 1), 77, np.int8)
        status = invoke(
            lib, op, case.scalars if scalars is None else scalars, case.arrays if arrays is None else arrays,
            out_buf if out else None,
        )  # fmt: skip
        assert status == -1, (op, scalars)
        assert (out_buf == 77).all(), f"{op} wrote output on a rejected call"

    def with_scalar(op: str, index: int, value: int) -> list[int]:
        s = list(base[op].scalars)
        s[index] = value
        return s

    for op in OPS:
        rejects(op, out=False)
        for i in range(len(base[op].arrays)):
            rejects(op, arrays=[None if j == i else a for j, a in enumerate(base[op].arrays)])
    dim_counts = {"linear": 3, "patch_embed": 5, "add": None, "lut": None, "layernorm": 2, "softmax": None,
                  "attention": 3, "mean_pool": 2, "copy": None}  # fmt: skip
    for op, count in dim_counts.items():
        indices = range(count) if count else [len(base[op].scalars) - 1]  # the size argument
        for i in indices:
            rejects(op, with_scalar(op, i, 0))
            rejects(op, with_scalar(op, i, -3))
    att = base["attention"].scalars
    rejects("attention", [att[0], 6, 4, *att[3:]])  # 6 channels, 4 heads
    pe = base["patch_embed"].scalars
    rejects("patch_embed", [pe[3] * 2 + 1, *pe[1:3], 2, *pe[4:]])  # odd height, patch 2
    rejects("patch_embed", [2, 3, pe[2], 2, *pe[4:]])  # width 3, patch 2
    # out-of-spec parameters: zero points, shifts, multipliers, eps
    rejects("linear", with_scalar("linear", 3, 128))
    rejects("linear", with_scalar("linear", 4, -129))
    lin = base["linear"]
    bad_shift = lin.arrays[4].copy()
    bad_shift[-1] = 31
    rejects("linear", arrays=[*lin.arrays[:4], bad_shift])
    bad_mult = lin.arrays[3].copy()
    bad_mult[0] = -1
    rejects("linear", arrays=[*lin.arrays[:3], bad_mult, lin.arrays[4]])
    rejects("add", with_scalar("add", 4, 0))
    rejects("add", with_scalar("add", 4, 31))
    rejects("add", with_scalar("add", 2, 2**15))
    rejects("add", with_scalar("add", 3, -1))
    rejects("layernorm", with_scalar("layernorm", 3, -1))
    rejects("layernorm", with_scalar("layernorm", 3, 2**62 + 1))
    rejects("layernorm", with_scalar("layernorm", 5, -33))
    rejects("attention", with_scalar("attention", 7, 31))  # score_shift
    rejects("attention", with_scalar("attention", 9, -5))  # out_mult
    rejects("mean_pool", with_scalar("mean_pool", 2, 200))
    rejects("mean_pool", with_scalar("mean_pool", 4, -40))


def encode(case: Case) -> bytes:
    """A record of mcf_kernel_driver's stdin format."""
    parts = [struct.pack("=iiii", DRIVER_OPS[case.op], case.alias, case.expected.nbytes, len(case.scalars))]
    parts.append(struct.pack(f"={len(case.scalars)}q", *case.scalars))
    parts.append(struct.pack("=i", len(case.arrays)))
    for a in case.arrays:
        data = np.ascontiguousarray(a).tobytes()
        parts += [struct.pack("=i", len(data)), data]
    return b"".join(parts)


def run_driver(exe: Path, batch: list[Case]) -> list[tuple[int, bytes]]:
    proc = subprocess.run([str(exe)], input=b"".join(map(encode, batch)), capture_output=True, timeout=60)
    assert proc.returncode == 0, f"sanitized driver failed ({proc.returncode}):\n{proc.stderr.decode()[-3000:]}"
    results, pos, out = [], 0, proc.stdout
    for _ in batch:
        status, size = struct.unpack_from("=ii", out, pos)
        results.append((status, out[pos + 8 : pos + 8 + size]))
        pos += 8 + size
    assert pos == len(out)
    return results


def test_sanitized_build_equals_reference(driver: Path) -> None:
    """ASan + UBSan build: exact-size heap arrays, fresh random cases (other seeds), in-place calls."""
    batch = [c for op in OPS for c in cases(op, SANITIZED_CASES, seed=2)]
    assert any(c.alias >= 0 for c in batch)
    for case, (status, got) in zip(batch, run_driver(driver, batch), strict=True):
        assert status == 0, (case.op, case.scalars)
        assert got == case.expected.astype(np.int8).tobytes(), f"{case.op} {case.scalars} differs"


def test_sanitized_isqrt64(driver: Path) -> None:
    """mcf_isqrt64 is the exact floor square root over all of uint64, beyond the range numpy's isqrt covers."""
    rng = np.random.default_rng(11)
    roots = [0, 1, 2, 3, 2**31 - 1, 2**31, 2**32 - 1, 3037000499, 3037000500]
    values = {0, 1, 2, 3, 4, 2**62, 2**63 - 1, 2**63, 2**64 - 1}
    values |= {r * r + d for r in roots for d in (-1, 0, 1) if 0 <= r * r + d < 2**64}
    values |= {int(v) for v in rng.integers(0, 2**63, 200, dtype=np.uint64, endpoint=True)}
    values |= {int(v) >> int(s) for v, s in zip(rng.integers(0, 2**63, 100), rng.integers(0, 63, 100), strict=True)}
    array = np.array(sorted(values), dtype=np.uint64)
    want = np.array([math.isqrt(int(v)) for v in array], dtype=np.uint64)
    case = Case("isqrt64", [], [array], want)
    [(status, got)] = run_driver(driver, [case])
    assert status == 0
    assert np.array_equal(np.frombuffer(got, np.uint64), want)
    small = array[array < 2**62]
    assert np.array_equal(spec.isqrt64(small.astype(np.int64)), want[array < 2**62].astype(np.int64))


def test_sanitizer_catches_overruns(tmp_path: Path) -> None:
    """The sanitized build would catch an out-of-bounds access: a deliberately broken driver call aborts."""
    bad = tmp_path / "overrun.c"
    bad.write_text(
        '#include <stdlib.h>\n#include "mcf_kernels.h"\n'
        "int main(void) { int8_t *a = calloc(4, 1); int8_t table[256] = {0};\n"
        "  mcf_status s = mcf_lut_s8(a, table, a, 5); free(a); return (int)s; }\n"
    )
    exe = compile_host([*kernel_sources(), bad], tmp_path / "overrun", include_dirs=[KERNEL_INCLUDE], sanitize=True)
    proc = subprocess.run([str(exe)], capture_output=True, timeout=60)
    assert proc.returncode != 0
    assert b"heap-buffer-overflow" in proc.stderr
