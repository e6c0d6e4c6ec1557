"""The fused per-token block kernels (mcf_fused.h) equal reference.run_block bit for bit.

mcf_attention_block_s8 then mcf_mlp_block_s8, in place on a copy of x, against run_block on random QBlocks
(built with the PTQ helpers from random float weights, their activation ranges calibrated by a float forward
pass): through ctypes with guard bytes around x, K, V and a scratch of exactly get_buffer_size bytes; through an
AddressSanitizer + UBSan executable with every buffer and parameter array in its own exact-size heap block; and
on whole random-weight QViTs (fused forward == reference.forward). Plus mcf_attention_row_s8 against one row of
ops.attention, and argument checking. (Scratch sizes: test_scratch_sizes.py; the builds: test_kernel_builds.py.)
"""

from __future__ import annotations

import ctypes
import math
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from kernel_ctypes import (
    ATTENTION_FIELDS,
    AddParams,
    AttentionDims,
    AttentionParams,
    ChannelQuant,
    LayerNormParams,
    LinearParams,
    P,
    guarded,
    int_fields,
    ptr,
)

from mcuformer.arch import PRESETS, ArchConfig, LayerRanks
from mcuformer.codegen.host_build import KERNEL_INCLUDE, compile_host, kernel_sources
from mcuformer.codegen.layout import widen_weights
from mcuformer.model import VisionTransformer
from mcuformer.quant import ops, reference, spec
from mcuformer.quant.ptq import calibrate, quantize_add, quantize_layernorm, quantize_linear, quantize_model
from mcuformer.quant.qmodel import QAdd, QAttention, QBlock, QFactored, QLayerNorm, QLinear, QParams, QViT

CHANNELS = (8, 12, 16, 24, 48)
BLOCK_CASES = 150  # random blocks through ctypes
SANITIZED_CASES = 12  # random blocks through the sanitized executable
ERR_ARG = -1

# ----------------------------------------------------------------------------------------- ctypes binding


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


SIGNATURES: dict[str, list[object]] = {
    "mcf_attention_row_s8": [P, P, P, P, P, P, P, P],
    "mcf_attention_s8": [P, P, P, P, P, P, P, P],
    "mcf_attention_s8_get_buffer_size": [P],
    "mcf_attention_block_s8_get_buffer_size": [P],
    "mcf_attention_block_s8": [P, P, P, P, P, P],
    "mcf_mlp_block_s8_get_buffer_size": [P],
    "mcf_mlp_block_s8": [P, P, P, P],
}


@pytest.fixture(scope="session")
def lib(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    out = tmp_path_factory.mktemp("fused") / "libmcf_kernels.so"
    library = ctypes.CDLL(str(compile_host(kernel_sources(), out, include_dirs=[KERNEL_INCLUDE], shared=True)))
    for name, argtypes in SIGNATURES.items():
        fn = getattr(library, name)
        fn.argtypes = argtypes
        fn.restype = ctypes.c_int32
    return library


@dataclass
class CBlock:
    """A QBlock as the fused kernels' structs; `keep` holds every array and struct the pointers refer to."""

    attn_dims: AttentionBlockDims
    attn: AttentionBlockParams
    mlp_dims: MlpBlockDims
    mlp: MlpBlockParams
    keep: list[object] = field(default_factory=list)


def _rank(layer: QFactored) -> int:
    return 0 if layer.v is None else layer.v.weight.shape[0]


def c_block(block: QBlock, tokens: int, widened: bool = False) -> CBlock:
    """`widened`: every linear with its weights in the int16 layout codegen can emit (codegen.layout)."""
    keep: list[object] = []

    def arr(values: np.ndarray, dtype: type) -> int:
        a: np.ndarray = np.ascontiguousarray(values, dtype=dtype)
        keep.append(a)
        return a.ctypes.data

    def linear(layer: QLinear) -> LinearLayer:
        quant = ChannelQuant(arr(layer.mult, np.int32), arr(layer.shift, np.int8))
        params = LinearParams(layer.input.zero_point, layer.output.zero_point)
        bias = arr(layer.bias, np.int32)
        if widened:
            return LinearLayer(params, quant, None, arr(widen_weights(layer.weight), np.int16), bias)
        return LinearLayer(params, quant, arr(layer.weight, np.int8), None, bias)

    def linear_ptr(layer: QLinear | None) -> int | None:
        if layer is None:
            return None
        struct = linear(layer)
        keep.append(struct)
        return ctypes.addressof(struct)

    def factored(layer: QFactored) -> FactoredLinear:
        return FactoredLinear(linear_ptr(layer.v), linear(layer.u))

    def norm(n: QLayerNorm) -> LayerNormLayer:
        params = LayerNormParams(n.input.zero_point, n.eps, n.mult, n.shift, n.output.zero_point)
        return LayerNormLayer(params, arr(n.gamma, np.int16), arr(n.beta, np.int32))

    def add(a: QAdd) -> AddParams:
        return AddParams(a.a.zero_point, a.b.zero_point, a.a_mult, a.b_mult, a.shift, a.output.zero_point)

    at = block.attn
    attention = AttentionParams(
        at.q.zero_point, at.k.zero_point, at.v.zero_point, at.score_mult, at.score_shift, at.score.zero_point,
        at.out_mult, at.out_shift, at.output.zero_point,
    )  # fmt: skip
    channels = block.q.weight.shape[0]
    qkv_rank = 0 if block.qkv_v is None else block.qkv_v.weight.shape[0]
    attn_params = AttentionBlockParams(
        norm(block.norm1), linear_ptr(block.qkv_v), linear(block.q), linear(block.k), linear(block.v), attention,
        arr(at.exp_table, np.int32), factored(block.proj), add(block.res1),
    )  # fmt: skip
    attn_dims = AttentionBlockDims(tokens, channels, at.heads, qkv_rank, _rank(block.proj))
    hidden = block.fc1.u.weight.shape[0]
    mlp_params = MlpBlockParams(
        norm(block.norm2), factored(block.fc1), arr(block.gelu_table, np.int8), factored(block.fc2), add(block.res2)
    )
    mlp_dims = MlpBlockDims(tokens, channels, hidden, _rank(block.fc1), _rank(block.fc2))
    return CBlock(attn_dims, attn_params, mlp_dims, mlp_params, keep)


@dataclass
class FusedRun:
    status_attention: int
    status_mlp: int
    x: np.ndarray  # after both halves
    after_attention: np.ndarray
    k: np.ndarray
    v: np.ndarray


def run_fused(lib: ctypes.CDLL, cb: CBlock, x: np.ndarray, rng: np.random.Generator) -> FusedRun:
    """Both halves in place on a guarded copy of x; K, V and the scratches guarded, scratch exactly sized."""
    ref = ctypes.byref
    tokens, channels = x.shape
    attn_size = lib.mcf_attention_block_s8_get_buffer_size(ref(cb.attn_dims))
    mlp_size = lib.mcf_mlp_block_s8_get_buffer_size(ref(cb.mlp_dims))
    assert attn_size > 0 and mlp_size > 0
    gx = guarded(x, rng)
    gk, gv = guarded(i8(rng, tokens, channels), rng), guarded(i8(rng, tokens, channels), rng)
    g_attn, g_mlp = guarded(i8(rng, attn_size), rng), guarded(i8(rng, mlp_size), rng)
    s1 = lib.mcf_attention_block_s8(
        ref(cb.attn_dims), ref(cb.attn), ptr(gx.data), ptr(gk.data), ptr(gv.data), ptr(g_attn.data)
    )
    after_attention = gx.data.copy()
    s2 = lib.mcf_mlp_block_s8(ref(cb.mlp_dims), ref(cb.mlp), ptr(gx.data), ptr(g_mlp.data))
    for g, what in ((gx, "x"), (gk, "K"), (gv, "V"), (g_attn, "the attention scratch"), (g_mlp, "the MLP scratch")):
        g.check_guards(what)
    shape = (tokens, channels)
    return FusedRun(
        s1, s2, gx.data.reshape(shape).copy(), after_attention.reshape(shape), gk.data.reshape(shape).copy(),
        gv.data.reshape(shape).copy(),
    )  # fmt: skip


# ------------------------------------------------------------------------------------------ random blocks


def i8(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.integers(-128, 127, shape, dtype=np.int8, endpoint=True)


@dataclass(frozen=True)
class BlockConfig:
    tokens: int
    channels: int
    heads: int
    hidden: int
    qkv_rank: int  # 0: full rank
    proj_rank: int
    fc1_rank: int
    fc2_rank: int


def random_config(rng: np.random.Generator, tokens: int | None = None) -> BlockConfig:
    channels = int(rng.choice(CHANNELS))
    heads = int(rng.choice([h for h in range(1, 5) if channels % h == 0]))
    hidden = channels * int(rng.integers(1, 5))

    def rank(fan_in: int, fan_out: int) -> int:
        return int(rng.integers(1, min(fan_in, fan_out) + 1)) if rng.random() < 0.5 else 0

    return BlockConfig(
        tokens if tokens is not None else int(rng.integers(1, 71)), channels, heads, hidden,
        rank(channels, channels), rank(channels, channels), rank(channels, hidden), rank(hidden, channels),
    )  # fmt: skip


def _layernorm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(x.var(axis=-1, keepdims=True) + 1e-5) * gamma + beta


def _softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _torch_layernorm(gamma: np.ndarray, beta: np.ndarray) -> torch.nn.LayerNorm:
    norm = torch.nn.LayerNorm(len(gamma))
    with torch.no_grad():
        norm.weight.copy_(torch.from_numpy(gamma))
        norm.bias.copy_(torch.from_numpy(beta))
    return norm


def random_block(rng: np.random.Generator, cfg: BlockConfig) -> tuple[QBlock, np.ndarray]:
    """A QBlock from random float weights, quantized with ranges from a float forward pass of x; and x."""
    d, hidden = cfg.channels, cfg.hidden
    x_q = QParams(float(10 ** rng.uniform(-2, -0.5)), int(rng.integers(-40, 41)))
    x = i8(rng, cfg.tokens, d)

    def weight(fan_out: int, fan_in: int) -> np.ndarray:
        return rng.normal(0, 1 / math.sqrt(fan_in), (fan_out, fan_in))

    def vector(n: int, mean: float, std: float) -> np.ndarray:
        return rng.normal(mean, std, n)

    def factored_weights(fan_in: int, fan_out: int, rank: int) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        if rank == 0:
            return None, weight(fan_out, fan_in), vector(fan_out, 0, 0.1)
        return weight(rank, fan_in), weight(fan_out, rank), vector(fan_out, 0, 0.1)

    g1, b1, g2, b2 = vector(d, 1, 0.3), vector(d, 0, 0.2), vector(d, 1, 0.3), vector(d, 0, 0.2)
    qkv_v = weight(cfg.qkv_rank, d) if cfg.qkv_rank else None
    qkv_in = cfg.qkv_rank or d
    w_qkv = [weight(d, qkv_in) for _ in range(3)]
    b_qkv = [vector(d, 0, 0.1) for _ in range(3)]
    proj, fc1, fc2 = (
        factored_weights(d, d, cfg.proj_rank),
        factored_weights(d, hidden, cfg.fc1_rank),
        factored_weights(hidden, d, cfg.fc2_rank),
    )

    # float forward: the calibration ranges of every tensor
    taps: dict[str, np.ndarray] = {}

    def tap(name: str, value: np.ndarray) -> np.ndarray:
        taps[name] = value
        return value

    def run_factored(name: str, inp: np.ndarray, w: tuple[np.ndarray | None, np.ndarray, np.ndarray]) -> np.ndarray:
        if w[0] is not None:
            inp = tap(f"{name}.mid", inp @ w[0].T)
        return tap(name, inp @ w[1].T + w[2])

    xf = (x.astype(np.float64) - x_q.zero_point) * x_q.scale
    h = tap("norm1", _layernorm(xf, g1, b1))
    t = tap("qkv.mid", h @ qkv_v.T) if qkv_v is not None else h
    q, k, v = (tap(n, t @ w.T + b) for n, w, b in zip("qkv", w_qkv, b_qkv, strict=True))
    head_dim = d // cfg.heads
    split = [a.reshape(cfg.tokens, cfg.heads, head_dim).transpose(1, 0, 2) for a in (q, k, v)]
    scores = tap("scores", split[0] @ split[1].transpose(0, 2, 1) / math.sqrt(head_dim))
    context = tap("context", (_softmax(scores) @ split[2]).transpose(1, 0, 2).reshape(cfg.tokens, d))
    res1 = tap("res1", xf + run_factored("proj", context, proj))
    h2 = tap("norm2", _layernorm(res1, g2, b2))
    act = tap("act", spec.gelu(run_factored("fc1", h2, fc1)))
    tap("res2", res1 + run_factored("fc2", act, fc2))

    def qp(name: str) -> QParams:
        low, high = float(taps[name].min()), float(taps[name].max())
        if rng.random() < 0.25:  # narrower (saturating) or wider ranges than calibrated
            low, high = (v * float(rng.uniform(0.4, 1.6)) for v in (low, high))
        return QParams(*spec.activation_qparams(low, high))

    def q_factored(name: str, inp: QParams, w: tuple[np.ndarray | None, np.ndarray, np.ndarray]) -> QFactored:
        if w[0] is None:
            return QFactored(None, quantize_linear(w[1], w[2], inp, qp(name)))
        mid = qp(f"{name}.mid")
        return QFactored(quantize_linear(w[0], None, inp, mid), quantize_linear(w[1], w[2], mid, qp(name)))

    norm1 = quantize_layernorm(_torch_layernorm(g1, b1), x_q, qp("norm1"))
    q_qkv_v = None if qkv_v is None else quantize_linear(qkv_v, None, norm1.output, qp("qkv.mid"))
    qkv_q = norm1.output if q_qkv_v is None else q_qkv_v.output
    lq, lk, lv = (quantize_linear(w, b, qkv_q, qp(n)) for n, w, b in zip("qkv", w_qkv, b_qkv, strict=True))
    score, ctx = qp("scores"), qp("context")
    score_mult, score_shift = spec.quantize_multiplier(
        lq.output.scale * lk.output.scale / math.sqrt(head_dim) / score.scale
    )
    out_mult, out_shift = spec.quantize_multiplier(lv.output.scale / 256.0 / ctx.scale)
    attn = QAttention(
        cfg.heads, lq.output, lk.output, lv.output, score, score_mult, score_shift, spec.exp_table(score.scale),
        out_mult, out_shift, ctx,
    )  # fmt: skip
    q_proj = q_factored("proj", ctx, proj)
    res1_add = quantize_add(x_q, q_proj.u.output, qp("res1"))
    norm2 = quantize_layernorm(_torch_layernorm(g2, b2), res1_add.output, qp("norm2"))
    q_fc1 = q_factored("fc1", norm2.output, fc1)
    act_q = qp("act")
    gelu = spec.lut_table(spec.gelu, q_fc1.u.output.scale, q_fc1.u.output.zero_point, act_q.scale, act_q.zero_point)
    q_fc2 = q_factored("fc2", act_q, fc2)
    res2_add = quantize_add(res1_add.output, q_fc2.u.output, qp("res2"))
    block = QBlock(norm1, q_qkv_v, lq, lk, lv, attn, q_proj, res1_add, norm2, q_fc1, gelu, q_fc2, res2_add)
    return block, x


def random_blocks(seed: int, count: int) -> Iterator[tuple[BlockConfig, QBlock, np.ndarray]]:
    rng = np.random.default_rng(seed)
    made = 0
    while made < count:
        cfg = random_config(rng, tokens=1 if made == 0 else (70 if made == 1 else None))
        try:
            block, x = random_block(rng, cfg)
        except ValueError:  # a rescale the int8 spec cannot express (rare): draw again
            continue
        made += 1
        yield cfg, block, x


def attention_half(block: QBlock, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """run_block's attention half: (x after res1, K, V)."""
    h = block.norm1(x)
    t = block.qkv_v(h) if block.qkv_v is not None else h
    k, v = block.k(t), block.v(t)
    return block.res1(x, block.proj(block.attn(block.q(t), k, v))), k, v


# ---------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("widened", [False, True], ids=["int8-weights", "widened-weights"])
def test_fused_block_equals_run_block(lib: ctypes.CDLL, widened: bool) -> None:
    rng = np.random.default_rng(99)
    seen: set[tuple[bool, ...]] = set()
    changed = 0
    for i, (cfg, block, x) in enumerate(random_blocks(seed=1, count=BLOCK_CASES)):
        want = reference.run_block(block, x)
        want_mid, want_k, want_v = attention_half(block, x)
        got = run_fused(lib, c_block(block, cfg.tokens, widened), x, rng)
        assert (got.status_attention, got.status_mlp) == (0, 0), (i, cfg)
        assert np.array_equal(got.k, want_k) and np.array_equal(got.v, want_v), f"case {i} {cfg}: K or V differ"
        assert np.array_equal(got.after_attention, want_mid), f"case {i} {cfg}: attention half differs"
        assert np.array_equal(got.x, want), f"case {i} {cfg}: MLP half differs"
        seen.add(tuple(r > 0 for r in (cfg.qkv_rank, cfg.proj_rank, cfg.fc1_rank, cfg.fc2_rank)))
        changed += int(not np.array_equal(want, x))
    assert len(seen) >= 12  # most low-rank/full-rank combinations of qkv, proj, fc1, fc2
    assert changed >= BLOCK_CASES - 5  # the blocks do something


def test_random_blocks_are_not_degenerate() -> None:
    """The calibrated random blocks give varied, mostly unsaturated values (not constant outputs)."""
    outputs, contexts, hiddens = [], [], []
    for _, block, x in random_blocks(seed=1, count=40):
        h = block.norm1(x)
        t = block.qkv_v(h) if block.qkv_v is not None else h
        contexts.append(block.attn(block.q(t), block.k(t), block.v(t)).reshape(-1))
        mid = block.res1(x, block.proj(contexts[-1].reshape(x.shape)))
        hiddens.append(ops.lut(block.fc1(block.norm2(mid)), block.gelu_table).reshape(-1))
        outputs.append(reference.run_block(block, x).reshape(-1))
    for name, values in (("output", outputs), ("context", contexts), ("gelu", hiddens)):
        v = np.concatenate(values)
        assert len(np.unique(v)) > 200, name
        assert ((v > -128) & (v < 127)).mean() > 0.8, name


def test_single_token(lib: ctypes.CDLL) -> None:
    rng = np.random.default_rng(5)
    for channels, heads in ((8, 1), (12, 3), (48, 4)):
        for ranks in ((0, 0, 0, 0), (3, 5, 7, 2)):
            cfg = BlockConfig(1, channels, heads, 2 * channels, *ranks)
            block, x = random_block(rng, cfg)
            got = run_fused(lib, c_block(block, 1), x, rng)
            assert (got.status_attention, got.status_mlp) == (0, 0)
            assert np.array_equal(got.x, reference.run_block(block, x)), cfg


def _fused_forward(lib: ctypes.CDLL, model: QViT, image: np.ndarray) -> np.ndarray:
    """reference.forward for one image, every block through the fused kernels."""
    arch = model.arch
    x = reference.quantize_pixels(image[None])
    pe = model.patch_embed
    patches = ops.patch_embed(
        x, arch.patch_size, pe.weight, pe.bias, pe.mult, pe.shift, pe.input.zero_point, pe.output.zero_point
    )
    tokens = model.pos_add(patches, model.pos_embed)[0]
    if model.cls_row is not None:
        tokens = np.concatenate([model.cls_row[None], tokens], axis=0)
    rng = np.random.default_rng(0)
    for block in model.blocks:
        run = run_fused(lib, c_block(block, tokens.shape[0]), tokens, rng)
        assert (run.status_attention, run.status_mlp) == (0, 0)
        tokens = run.x
    if model.pool is None:
        pooled = tokens[0]
    else:
        p = model.pool
        pooled = ops.mean_pool(tokens, p.input.zero_point, p.mult, p.shift, p.output.zero_point)
    return model.head(model.norm(pooled))


MIXED = ArchConfig(
    image_size=16, channels=3, patch_size=4, embed_dim=24, depth=3, num_heads=(3, 2, 4), mlp_ratios=(2.0, 4.0, 1.5),
    ranks=(LayerRanks(qkv=8, fc2=12), LayerRanks(proj=6, fc1=10), LayerRanks()), num_classes=5, pool="mean",
    name="mixed",
)  # fmt: skip


@pytest.mark.parametrize("arch", [PRESETS["micro"], PRESETS["fmnist-lowrank"], MIXED], ids=lambda a: a.name)
def test_fused_forward_equals_reference(lib: ctypes.CDLL, arch: ArchConfig) -> None:
    """A random-weight ViT quantized by PTQ: the forward pass with fused blocks gives the reference logits."""
    torch.manual_seed(0)
    model = VisionTransformer(arch, [0.5] * arch.channels, [0.25] * arch.channels)
    gen = torch.Generator().manual_seed(1)
    pixels = torch.rand(32, arch.channels, arch.image_size, arch.image_size, generator=gen)
    qvit = quantize_model(model, calibrate(model, pixels))
    images = (pixels[:4].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    want = reference.forward(qvit, images)
    for i in range(len(images)):
        assert np.array_equal(_fused_forward(lib, qvit, images[i]), want[i]), (arch.name, i)


def test_attention_row_equals_attention(lib: ctypes.CDLL) -> None:
    """mcf_attention_row_s8 on row t == row t of ops.attention (and of mcf_attention_s8), in place or not."""
    rng = np.random.default_rng(3)
    ref = ctypes.byref
    outputs: list[np.ndarray] = []
    for case in range(60):
        tokens, heads, head_dim = int(rng.integers(1, 40)), int(rng.integers(1, 5)), int(rng.integers(1, 13))
        channels = heads * head_dim
        q, k, v = i8(rng, tokens, channels), i8(rng, tokens, channels), i8(rng, tokens, channels)
        score_scale = float(10 ** rng.uniform(-2.5, 0))
        score_mult, score_shift = spec.quantize_multiplier(float(10 ** rng.uniform(-5, -2)) / math.sqrt(head_dim))
        out_mult, out_shift = spec.quantize_multiplier(float(10 ** rng.uniform(-3.5, -1.5)))
        table = spec.exp_table(score_scale)
        q_zp, k_zp, v_zp, score_zp, out_zp = (int(z) for z in rng.integers(-128, 128, 5))
        params = AttentionParams(q_zp, k_zp, v_zp, score_mult, score_shift, score_zp, out_mult, out_shift, out_zp)
        want = ops.attention(
            q, k, v, heads, q_zp, k_zp, v_zp, score_mult, score_shift, score_zp, table, out_mult, out_shift, out_zp
        )
        outputs.append(want.reshape(-1))
        dims = AttentionDims(tokens, channels, heads)
        whole = np.zeros_like(q)
        scratch = np.zeros(lib.mcf_attention_s8_get_buffer_size(ref(dims)), np.int8)
        assert lib.mcf_attention_s8(ref(dims), ref(params), ptr(q), ptr(k), ptr(v), ptr(table), ptr(whole),
                                    ptr(scratch)) == 0  # fmt: skip
        assert np.array_equal(whole, want)
        in_place = case % 2 == 1
        for t in range(tokens):
            row = guarded(q[t], rng)
            out = row if in_place else guarded(np.zeros(channels, np.int8), rng)
            g_scratch = guarded(np.zeros(tokens, np.int8), rng)  # exactly `tokens` bytes
            status = lib.mcf_attention_row_s8(
                ref(dims), ref(params), ptr(row.data), ptr(k), ptr(v), ptr(table), ptr(out.data), ptr(g_scratch.data)
            )
            assert status == 0
            for g in (row, out, g_scratch):
                g.check_guards("the row buffers")
            assert np.array_equal(out.data, want[t]), (case, t)
            if not in_place:
                assert np.array_equal(row.data, q[t]), "wrote into q_row"
    values = np.concatenate(outputs)
    assert len(np.unique(values)) > 200 and ((values > -128) & (values < 127)).mean() > 0.5


def test_attention_row_invalid_arguments(lib: ctypes.CDLL) -> None:
    ref = ctypes.byref
    tokens, channels, heads = 5, 12, 3
    rng = np.random.default_rng(4)
    q, k, v = i8(rng, channels), i8(rng, tokens, channels), i8(rng, tokens, channels)
    table = spec.exp_table(0.05)
    good = [1, 2, 3, 2**30, -8, 0, 2**30, -10, 4]
    scratch = np.zeros(tokens, np.int8)

    def call(dims: tuple[int, int, int], params: list[int], arrays: list[np.ndarray | None]) -> int:
        out = np.full(channels, 77, np.int8)
        status = int(lib.mcf_attention_row_s8(ref(AttentionDims(*dims)), ref(AttentionParams(*params)),
                                              *(ptr(a) for a in arrays[:4]), ptr(out), ptr(arrays[4])))  # fmt: skip
        if status != 0:
            assert (out == 77).all(), "wrote output on a rejected call"
        return status

    arrays: list[np.ndarray | None] = [q, k, v, table, scratch]
    assert call((tokens, channels, heads), good, arrays) == 0
    for i in range(len(arrays)):
        assert call((tokens, channels, heads), good, [None if j == i else a for j, a in enumerate(arrays)]) == ERR_ARG
    for dims in ((0, channels, heads), (tokens, 0, heads), (tokens, channels, 0), (tokens, channels, 5), (-1, 12, 3)):
        assert call(dims, good, arrays) == ERR_ARG, dims
    for index, value in ((0, 128), (2, -129), (3, -1), (4, 31), (5, 200), (7, -33), (8, 128)):
        bad = list(good)
        bad[index] = value
        assert call((tokens, channels, heads), bad, arrays) == ERR_ARG, (index, value)
    out = np.zeros(channels, np.int8)
    assert lib.mcf_attention_row_s8(None, ref(AttentionParams(*good)), ptr(q), ptr(k), ptr(v), ptr(table), ptr(out),
                                    ptr(scratch)) == ERR_ARG  # fmt: skip
    assert lib.mcf_attention_row_s8(ref(AttentionDims(tokens, channels, heads)), None, ptr(q), ptr(k), ptr(v),
                                    ptr(table), ptr(out), ptr(scratch)) == ERR_ARG  # fmt: skip


# --------------------------------------------------------------------------------------- invalid arguments

Mutation = Callable[[CBlock], None]


def _both_layouts(path: str) -> Mutation:
    """A mutation giving a linear (dotted path) both weight layouts: exactly one may be set."""

    def apply(cb: CBlock) -> None:
        target: object = cb
        for name in path.split("."):
            target = getattr(target, name)
        target.weight16 = target.weight  # type: ignore[attr-defined]

    return apply


def _set(path: str, value: object) -> Mutation:
    """A mutation setting a (dotted) field of the attention ('attn.'), MLP ('mlp.') params or dims."""

    def apply(cb: CBlock) -> None:
        names = path.split(".")
        target: object = cb
        for name in names[:-1]:
            target = getattr(target, name)
        setattr(target, names[-1], value)

    return apply


def _bad_array(path: str, length: int, dtype: type, value: int, index: int = -1) -> Mutation:
    """A mutation pointing a field at a copy of a valid array with one out-of-range entry."""

    def apply(cb: CBlock) -> None:
        names = path.split(".")
        target: object = cb
        for name in names[:-1]:
            target = getattr(target, name)
        src = ctypes.cast(getattr(target, names[-1]), ctypes.POINTER(np.ctypeslib.as_ctypes_type(dtype)))
        array = np.ctypeslib.as_array(src, (length,)).copy()
        array[index] = value
        cb.keep.append(array)
        setattr(target, names[-1], array.ctypes.data)

    return apply


def test_invalid_arguments(lib: ctypes.CDLL) -> None:
    """MCF_ERR_ARG for NULLs, bad dims, inconsistent ranks and out-of-spec parameters; x left unchanged."""
    ref = ctypes.byref
    rng = np.random.default_rng(21)
    cfg = BlockConfig(6, 12, 3, 24, 4, 5, 6, 7)
    block, x = random_block(rng, cfg)
    full_cfg = BlockConfig(6, 12, 3, 24, 0, 0, 0, 0)
    full_block, _ = random_block(rng, full_cfg)
    d, hidden = cfg.channels, cfg.hidden

    def run(which: str, mutate: Mutation | None = None, nulls: tuple[int, ...] = (), blk: QBlock = block) -> int:
        cb = c_block(blk, cfg.tokens)
        if mutate is not None:
            mutate(cb)
        size = 4096  # ample scratch
        buf = x.copy()
        k, v, scratch = np.zeros((6, d), np.int8), np.zeros((6, d), np.int8), np.zeros(size, np.int8)
        if which == "attn":
            args = [ref(cb.attn_dims), ref(cb.attn), ptr(buf), ptr(k), ptr(v), ptr(scratch)]
            args = [None if i in nulls else a for i, a in enumerate(args)]
            status = int(lib.mcf_attention_block_s8(*args))
        else:
            args = [ref(cb.mlp_dims), ref(cb.mlp), ptr(buf), ptr(scratch)]
            args = [None if i in nulls else a for i, a in enumerate(args)]
            status = int(lib.mcf_mlp_block_s8(*args))
        if status != 0:
            assert np.array_equal(buf, x), f"{which} wrote x on a rejected call"
        return status

    assert run("attn") == 0 and run("mlp") == 0
    assert run("attn", blk=full_block) == 0 and run("mlp", blk=full_block) == 0
    for i in range(6):
        assert run("attn", nulls=(i,)) == ERR_ARG, i
    for i in range(4):
        assert run("mlp", nulls=(i,)) == ERR_ARG, i

    attn_bad: list[Mutation] = [
        *(_set(f"attn_dims.{f}", v) for f in ("tokens", "channels", "heads") for v in (0, -3)),
        _set("attn_dims.heads", 5),  # 12 channels, 5 heads
        _set("attn_dims.block_tokens", 2),  # neither the default blocks nor one token at a time
        _set("attn_dims.qkv_rank", -1),
        _set("attn_dims.qkv_rank", 0),  # a V factor without its rank
        _set("attn_dims.proj_rank", 0),
        _set("attn.qkv_v", None),  # a rank without its V factor
        _set("attn.proj.v", None),
        _set("attn.norm.gamma", None),
        _set("attn.norm.params.eps", -1),
        _set("attn.norm.params.in_zp", 128),
        _set("attn.k.weight", None),
        _both_layouts("attn.q"),
        _set("attn.v.bias", None),
        _set("attn.q.params.out_zp", -129),  # found in pass 2 only: x still unchanged
        _set("attn.q.quant.mult", None),
        _bad_array("attn.k.quant.shift", d, np.int8, 31),
        _bad_array("attn.q.quant.mult", d, np.int32, -5, 0),
        _set("attn.exp_table", None),
        _set("attn.attention.score_shift", 31),
        _set("attn.attention.v_zp", 300),
        _set("attn.proj.u.params.in_zp", -200),
        _set("attn.residual.shift", 0),
        _set("attn.residual.b_mult", 2**15),
    ]
    for i, mutate in enumerate(attn_bad):
        assert run("attn", mutate) == ERR_ARG, f"attention mutation {i}"
    full_bad: list[Mutation] = [_set("attn_dims.qkv_rank", 3), _set("attn_dims.proj_rank", 2)]
    for i, mutate in enumerate(full_bad):
        assert run("attn", mutate, blk=full_block) == ERR_ARG, f"full-rank attention mutation {i}"

    mlp_bad: list[Mutation] = [
        _set("mlp_dims.block_tokens", -1),
        *(_set(f"mlp_dims.{f}", v) for f in ("tokens", "channels", "hidden") for v in (0, -3)),
        _set("mlp_dims.fc1_rank", -2),
        _set("mlp_dims.fc1_rank", 0),
        _set("mlp_dims.fc2_rank", 0),
        _set("mlp.fc1.v", None),
        _set("mlp.fc2.v", None),
        _set("mlp.norm.beta", None),
        _set("mlp.norm.params.shift", -33),
        _set("mlp.fc1.u.weight", None),
        _both_layouts("mlp.fc2.u"),
        _bad_array("mlp.fc1.u.quant.shift", hidden, np.int8, -40),
        _set("mlp.gelu_table", None),
        _set("mlp.fc2.u.params.out_zp", 128),
        _set("mlp.residual.a_zp", -129),
        _set("mlp.residual.shift", 31),
    ]
    for i, mutate in enumerate(mlp_bad):
        assert run("mlp", mutate) == ERR_ARG, f"MLP mutation {i}"
    for i, mutate in enumerate([_set("mlp_dims.fc1_rank", 4), _set("mlp_dims.fc2_rank", 1)]):
        assert run("mlp", mutate, blk=full_block) == ERR_ARG, f"full-rank MLP mutation {i}"


# ---------------------------------------------------------------------------------------- sanitized build

_C_TYPES = {np.dtype(np.int8): "int8_t", np.dtype(np.int16): "int16_t", np.dtype(np.int32): "int32_t"}


class _Emitter:
    """C source of one test: every array in its own exact-size heap block, the structs filled field by field."""

    def __init__(self) -> None:
        self.decls: list[str] = []
        self.body: list[str] = []
        self.count = 0
        self.widened = False

    def array(self, values: np.ndarray, dtype: type) -> str:
        a: np.ndarray = np.ascontiguousarray(values, dtype=dtype).reshape(-1)
        name = f"a{self.count}"
        self.count += 1
        ctype = _C_TYPES[a.dtype]
        self.decls.append(f"static const {ctype} {name}_init[{a.size}] = {{{', '.join(map(str, a.tolist()))}}};")
        self.body.append(f"{ctype} *{name} = dup({name}_init, sizeof {name}_init);")
        return name

    def linear(self, target: str, layer: QLinear) -> None:
        """Every other block's linears with widened weights (the layout codegen can emit)."""
        if self.widened:
            w16, w = self.array(widen_weights(layer.weight), np.int16), "NULL"
        else:
            w16, w = "NULL", self.array(layer.weight, np.int8)
        b = self.array(layer.bias, np.int32)
        m, s = self.array(layer.mult, np.int32), self.array(layer.shift, np.int8)
        self.body += [
            f"{target}.params.in_zp = {layer.input.zero_point}; {target}.params.out_zp = {layer.output.zero_point};",
            f"{target}.quant.mult = {m}; {target}.quant.shift = {s}; {target}.weight = {w}; "
            f"{target}.weight16 = {w16}; {target}.bias = {b};",
        ]

    def linear_ptr(self, target: str, layer: QLinear | None) -> None:
        if layer is None:
            self.body.append(f"{target} = NULL;")
            return
        name = f"layer{self.count}"
        self.count += 1
        self.body.append(f"mcf_linear_layer *{name} = calloc(1, sizeof *{name});")
        self.linear(f"(*{name})", layer)
        self.body.append(f"{target} = {name};")

    def factored(self, target: str, layer: QFactored) -> None:
        self.linear_ptr(f"{target}.v", layer.v)
        self.linear(f"{target}.u", layer.u)

    def norm(self, target: str, n: QLayerNorm) -> None:
        g, b = self.array(n.gamma, np.int16), self.array(n.beta, np.int32)
        p = f"{target}.params"
        self.body += [
            f"{p}.in_zp = {n.input.zero_point}; {p}.eps = {n.eps}LL; {p}.mult = {n.mult}; "
            f"{p}.shift = {n.shift}; {p}.out_zp = {n.output.zero_point};",
            f"{target}.gamma = {g}; {target}.beta = {b};",
        ]

    def add(self, target: str, a: QAdd) -> None:
        values = (a.a.zero_point, a.b.zero_point, a.a_mult, a.b_mult, a.shift, a.output.zero_point)
        fields = ("a_zp", "b_zp", "a_mult", "b_mult", "shift", "out_zp")
        self.body.append(" ".join(f"{target}.{f} = {v};" for f, v in zip(fields, values, strict=True)))

    def block(self, index: int, block: QBlock, x: np.ndarray) -> None:
        tokens, d = x.shape
        cb = c_block(block, tokens)  # only for the dims
        ad, md = cb.attn_dims, cb.mlp_dims
        self.widened = index % 2 == 1
        self.body.append("{")
        self.body.append(
            f"const mcf_attention_block_dims ad = {{{ad.tokens}, {ad.channels}, {ad.heads}, {ad.qkv_rank}, "
            f"{ad.proj_rank}, {index % 2}}};"  # every other block one token at a time (the least-memory variant)
        )
        self.body.append(
            f"const mcf_mlp_block_dims md = {{{md.tokens}, {md.channels}, {md.hidden}, {md.fc1_rank}, {md.fc2_rank}, "
            f"{index % 2}}};"
        )
        self.body.append("mcf_attention_block_params ap; mcf_mlp_block_params mp;")
        self.norm("ap.norm", block.norm1)
        self.linear_ptr("ap.qkv_v", block.qkv_v)
        for part in "qkv":
            self.linear(f"ap.{part}", getattr(block, part))
        at = block.attn
        values = (at.q.zero_point, at.k.zero_point, at.v.zero_point, at.score_mult, at.score_shift,
                  at.score.zero_point, at.out_mult, at.out_shift, at.output.zero_point)  # fmt: skip
        self.body.append(" ".join(f"ap.attention.{f} = {v};" for f, v in zip(ATTENTION_FIELDS, values, strict=True)))
        self.body.append(f"ap.exp_table = {self.array(at.exp_table, np.int32)};")
        self.factored("ap.proj", block.proj)
        self.add("ap.residual", block.res1)
        self.norm("mp.norm", block.norm2)
        self.factored("mp.fc1", block.fc1)
        self.body.append(f"mp.gelu_table = {self.array(block.gelu_table, np.int8)};")
        self.factored("mp.fc2", block.fc2)
        self.add("mp.residual", block.res2)
        xs = self.array(x, np.int8)
        self.body += [
            f"int8_t *k = malloc({tokens * d}); int8_t *v = malloc({tokens * d});",
            "void *s1 = malloc((size_t)mcf_attention_block_s8_get_buffer_size(&ad));",
            "void *s2 = malloc((size_t)mcf_mlp_block_s8_get_buffer_size(&md));",
            f"if (mcf_attention_block_s8(&ad, &ap, {xs}, k, v, s1) != MCF_OK) return 1{index:03d};",
            f"if (mcf_mlp_block_s8(&md, &mp, {xs}, s2) != MCF_OK) return 2{index:03d};",
            f"fwrite({xs}, 1, {tokens * d}, stdout);",
            "free(k); free(v); free(s1); free(s2);",
            "}",
        ]

    def source(self) -> str:
        head = [
            "#include <stdio.h>", "#include <stdlib.h>", "#include <string.h>", '#include "mcf_fused.h"',
            "static void *dup(const void *src, size_t size) { void *p = malloc(size); memcpy(p, src, size); "
            "return p; }",
        ]  # fmt: skip
        # heap blocks stay allocated to the end (the leak checker is off): simpler than tracking them
        return "\n".join([*head, *self.decls, "int main(void) {", *self.body, "return 0; }", ""])


def test_sanitized_build_equals_run_block(tmp_path: Path) -> None:
    """ASan + UBSan: every parameter array, x, K, V and the exactly-sized scratches in exact-size heap blocks."""
    emitter = _Emitter()
    expected = []
    for i, (_, block, x) in enumerate(random_blocks(seed=2, count=SANITIZED_CASES)):
        emitter.block(i, block, x)
        expected.append(reference.run_block(block, x).tobytes())
    source = tmp_path / "fused_san.c"
    source.write_text(emitter.source())
    exe = compile_host([*kernel_sources(), source], tmp_path / "fused_san", include_dirs=[KERNEL_INCLUDE],
                       sanitize=True)  # fmt: skip
    proc = subprocess.run([str(exe)], capture_output=True, timeout=120, env={"ASAN_OPTIONS": "detect_leaks=0"})
    assert proc.returncode == 0, f"sanitized run failed ({proc.returncode}):\n{proc.stderr.decode()[-3000:]}"
    assert proc.stdout == b"".join(expected)
