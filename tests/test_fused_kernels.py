"""The fused per-token block kernels (mcf_fused.h) equal reference.run_block bit for bit.

mcf_attention_block_s8 then mcf_mlp_block_s8, in place on a copy of x, against run_block on random QBlocks
(built with the PTQ helpers from random float weights, their activation ranges calibrated by a float forward
pass): through ctypes with guard bytes around x, K, V and a scratch of exactly get_buffer_size bytes; through an
AddressSanitizer + UBSan executable with every buffer and parameter array in its own exact-size heap block; and
on whole random-weight QViTs (fused forward == reference.forward). Plus mcf_attention_row_s8 against one row of
ops.attention, and argument checking. (The sanitized build: test_fused_sanitized.py; scratch sizes:
test_scratch_sizes.py; the builds: test_kernel_builds.py; the random blocks: fused_blocks.py.)
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from fused_blocks import BlockConfig, CBlock, attention_half, c_block, i8, random_block, random_blocks
from kernel_ctypes import (
    AttentionDims,
    AttentionParams,
    P,
    guarded,
    ptr,
)

from mcuformer.arch import PRESETS, ArchConfig, LayerRanks
from mcuformer.codegen.host_build import KERNEL_INCLUDE, compile_host, kernel_sources
from mcuformer.model import VisionTransformer
from mcuformer.quant import ops, reference, spec
from mcuformer.quant.ptq import calibrate, quantize_model
from mcuformer.quant.qmodel import QBlock, QViT

BLOCK_CASES = 150  # random blocks through ctypes
ERR_ARG = -1

# ----------------------------------------------------------------------------------------- ctypes binding


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
