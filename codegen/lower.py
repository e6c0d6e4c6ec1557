"""Front end: a quantized ViT (QViT) -> graph IR, layer by layer, with in-place residual adds."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mcuformer.arch import ArchConfig
from mcuformer.codegen.ir import Graph, IRError, Op, TensorSpec
from mcuformer.codegen.layout import widen_weights
from mcuformer.codegen.ops import OPS, kernel_scratch_bytes
from mcuformer.codegen.scratch import BLOCK_CHOICES, BLOCKS_DEFAULT, PATCH_BLOCKS, patch_row_blocks
from mcuformer.codegen.verify import verify
from mcuformer.quant.qmodel import QAdd, QBlock, QFactored, QLayerNorm, QLinear, QViT
from mcuformer.quant.spec import SHIFT_MAX, SHIFT_MIN


class _Builder:
    def __init__(self, graph: Graph, schedule: Schedule, widened: Collection[str] = (),
                 block_tokens: int = BLOCKS_DEFAULT) -> None:  # fmt: skip
        self.graph = graph
        self.schedule = schedule
        self.widened = widened  # fused ops' linears (by name) whose weights are emitted widened to int16
        self.block_tokens = block_tokens  # the fused ops' token block

    def tensor(self, name: str, shape: tuple[int, ...], alias_of: str | None = None, offset: int = 0) -> str:
        return self.graph.add_tensor(TensorSpec(name, shape, alias_of, offset))

    def linear(self, name: str, x: str, layer: QLinear, out: str | None = None) -> str:
        g = self.graph
        rows = g.shape(x)[:-1]
        out = out or self.tensor(name, (*rows, layer.weight.shape[0]))
        consts = (
            g.add_const(f"{name}_w", layer.weight), g.add_const(f"{name}_b", layer.bias),
            g.add_const(f"{name}_m", layer.mult), g.add_const(f"{name}_s", channel_shifts(layer.shift)),
        )  # fmt: skip
        attrs = {"in_zp": layer.input.zero_point, "out_zp": layer.output.zero_point}
        g.add_op(Op(name, "linear", (x, *consts), out, attrs))
        return out

    def factored(self, name: str, x: str, layer: QFactored) -> str:
        if layer.v is not None:
            x = self.linear(f"{name}_v", x, layer.v)
        return self.linear(f"{name}_u" if layer.v is not None else name, x, layer.u)

    def layernorm(self, name: str, x: str, norm: QLayerNorm) -> str:
        g = self.graph
        out = self.tensor(name, g.shape(x))
        consts = (g.add_const(f"{name}_gamma", norm_gamma(norm.gamma)), g.add_const(f"{name}_beta", norm.beta))
        attrs = {"in_zp": norm.input.zero_point, "eps": norm.eps, "mult": norm.mult, "shift": norm.shift,
                 "out_zp": norm.output.zero_point}  # fmt: skip
        g.add_op(Op(name, "layernorm", (x, *consts), out, attrs))
        return out

    def residual_add(self, name: str, a: str, b: str, add: QAdd) -> str:
        """out = a + b, written over a (dead afterwards: the residual stream) when the schedule overwrites tokens."""
        out = self.tensor(name, self.graph.shape(a), alias_of=a if self.schedule.overwrite_tokens else None)
        attrs = {"a_zp": add.a.zero_point, "b_zp": add.b.zero_point, "a_mult": add.a_mult,
                 "b_mult": add.b_mult, "shift": add.shift, "out_zp": add.output.zero_point}  # fmt: skip
        self.graph.add_op(Op(name, "add", (a, b), out, attrs))
        return out

    def linear_operands(self, name: str, layer: QLinear | None, role: str, attrs: dict[str, int]) -> tuple[str, ...]:
        """Consts of one linear inside a fused op (four "" when the layer is absent) and its zero points."""
        attrs[f"{role}.in_zp"] = layer.input.zero_point if layer else 0
        attrs[f"{role}.out_zp"] = layer.output.zero_point if layer else 0
        if layer is None:
            return ("", "", "", "")
        g = self.graph
        weight = widen_weights(layer.weight) if name in self.widened else layer.weight
        arrays = (weight, layer.bias, layer.mult, channel_shifts(layer.shift))
        return tuple(g.add_const(f"{name}_{s}", a) for s, a in zip("wbms", arrays, strict=True))

    def norm_operands(self, name: str, norm: QLayerNorm, attrs: dict[str, int]) -> tuple[str, str]:
        attrs.update({"norm.in_zp": norm.input.zero_point, "norm.eps": norm.eps, "norm.mult": norm.mult,
                      "norm.shift": norm.shift, "norm.out_zp": norm.output.zero_point})  # fmt: skip
        g = self.graph
        return g.add_const(f"{name}_gamma", norm_gamma(norm.gamma)), g.add_const(f"{name}_beta", norm.beta)

    @staticmethod
    def residual_attrs(add: QAdd, attrs: dict[str, int]) -> None:
        attrs.update({"res.a_zp": add.a.zero_point, "res.b_zp": add.b.zero_point, "res.a_mult": add.a_mult,
                      "res.b_mult": add.b_mult, "res.shift": add.shift,
                      "res.out_zp": add.output.zero_point})  # fmt: skip

    def scratch(self, name: str, nbytes: int) -> str:
        return self.graph.add_tensor(TensorSpec(name, (nbytes,), scratch=True))

    def kernel_scratch(
        self, name: str, kind: str, inputs: tuple[str, ...], attrs: dict[str, int], extra: int = 0
    ) -> str:
        """The scratch an op's kernel asks for (the op table's mirror of its _get_buffer_size), + `extra` bytes."""
        probe = Op(name, kind, inputs, "", attrs)  # the sizes follow from the operands and attributes alone
        return self.scratch(name, kernel_scratch_bytes(self.graph, probe) + extra)

    def fused_block(self, index: int, x: str, block: QBlock, kind: str) -> str:
        """The block as two per-token fused ops written over the residual stream (K, V: the op's own buffers);
        `kind`: the attention half's op kind (ATTENTION_KINDS)."""
        g, p = self.graph, f"b{index}"
        tokens, dim = g.shape(x)
        attn, attrs = block.attn, {"heads": block.attn.heads, "block_tokens": self.block_tokens}
        operands = (
            x, *self.norm_operands(f"{p}_norm1", block.norm1, attrs),
            *self.linear_operands(f"{p}_qkv_v", block.qkv_v, "qkv_v", attrs),
            *(o for part in "qkv" for o in self.linear_operands(f"{p}_{part}", getattr(block, part), part, attrs)),
            g.add_const(f"{p}_exp", attn.exp_table),
            *self.linear_operands(f"{p}_proj_v", block.proj.v, "proj_v", attrs),
            *self.linear_operands(f"{p}_proj_u", block.proj.u, "proj_u", attrs),
        )  # fmt: skip
        attrs.update({"attn.q_zp": attn.q.zero_point, "attn.k_zp": attn.k.zero_point, "attn.v_zp": attn.v.zero_point,
                      "attn.score_mult": attn.score_mult, "attn.score_shift": attn.score_shift,
                      "attn.score_zp": attn.score.zero_point, "attn.out_mult": attn.out_mult,
                      "attn.out_shift": attn.out_shift, "attn.out_zp": attn.output.zero_point})  # fmt: skip
        self.residual_attrs(block.res1, attrs)
        attrs = {key: attrs[key] for key in OPS[kind].attrs}
        x1 = self.tensor(f"{p}_res1", (tokens, dim), alias_of=x if self.schedule.overwrite_tokens else None)
        buffers: tuple[str, ...]
        if kind != "attention_block":  # one head's K and V at a time, every token's context
            head_dim = dim // attn.heads
            buffers = (self.scratch(f"{p}_k_head", tokens * head_dim), self.scratch(f"{p}_v_head", tokens * head_dim),
                       self.scratch(f"{p}_context", tokens * dim))  # fmt: skip
        else:
            buffers = (self.scratch(f"{p}_k", tokens * dim), self.scratch(f"{p}_v", tokens * dim))
        scratch = self.kernel_scratch(f"{p}_attn_scratch", kind, operands, attrs)
        g.add_op(Op(f"{p}_attention_block", kind, operands, x1, attrs, (*buffers, scratch)))

        attrs = {"block_tokens": self.block_tokens}
        operands = (
            x1, *self.norm_operands(f"{p}_norm2", block.norm2, attrs),
            *self.linear_operands(f"{p}_fc1_v", block.fc1.v, "fc1_v", attrs),
            *self.linear_operands(f"{p}_fc1_u", block.fc1.u, "fc1_u", attrs),
            g.add_const(f"{p}_gelu_table", block.gelu_table),
            *self.linear_operands(f"{p}_fc2_v", block.fc2.v, "fc2_v", attrs),
            *self.linear_operands(f"{p}_fc2_u", block.fc2.u, "fc2_u", attrs),
        )  # fmt: skip
        self.residual_attrs(block.res2, attrs)
        attrs = {key: attrs[key] for key in OPS["mlp_block"].attrs}
        mlp_scratch = self.kernel_scratch(f"{p}_mlp_scratch", "mlp_block", operands, attrs)
        x2 = self.tensor(f"{p}_res2", (tokens, dim), alias_of=x1 if self.schedule.overwrite_tokens else None)
        g.add_op(Op(f"{p}_mlp_block", "mlp_block", operands, x2, attrs, (mlp_scratch,)))
        return x2

    def block(self, index: int, x: str, block: QBlock) -> str:
        g, p = self.graph, f"b{index}"
        h = self.layernorm(f"{p}_norm1", x, block.norm1)
        t = self.linear(f"{p}_qkv_v", h, block.qkv_v) if block.qkv_v is not None else h
        q, k, v = (self.linear(f"{p}_{part}", t, getattr(block, part)) for part in "qkv")
        attn = block.attn
        tokens, dim = g.shape(q)
        attrs = {"heads": attn.heads, "q_zp": attn.q.zero_point, "k_zp": attn.k.zero_point,
                 "v_zp": attn.v.zero_point, "score_mult": attn.score_mult, "score_shift": attn.score_shift,
                 "score_zp": attn.score.zero_point, "out_mult": attn.out_mult, "out_shift": attn.out_shift,
                 "out_zp": attn.output.zero_point}  # fmt: skip
        exp = g.add_const(f"{p}_exp", attn.exp_table)
        # A layer-by-layer interpreter holds every head's N x N scores besides the row the kernel needs.
        full_scores = attn.heads * tokens * tokens if self.schedule.full_scores else 0
        scratch = self.kernel_scratch(f"{p}_attn_scratch", "attention", (q, k, v, exp), attrs, full_scores)
        context = self.tensor(f"{p}_context", (tokens, dim))
        g.add_op(Op(f"{p}_attention", "attention", (q, k, v, exp), context, attrs, (scratch,)))
        x = self.residual_add(f"{p}_res1", x, self.factored(f"{p}_proj", context, block.proj), block.res1)
        h = self.layernorm(f"{p}_norm2", x, block.norm2)
        f = self.factored(f"{p}_fc1", h, block.fc1)
        act = self.tensor(f"{p}_gelu", g.shape(f), alias_of=f if self.schedule.overwrite_tokens else None)
        g.add_op(Op(f"{p}_gelu", "lut", (f, g.add_const(f"{p}_gelu_table", block.gelu_table)), act))
        return self.residual_add(f"{p}_res2", x, self.factored(f"{p}_fc2", act, block.fc2), block.res2)


def channel_shifts(shift: np.ndarray) -> np.ndarray:
    """Per-channel requantization shifts as the kernels take them: one byte each (mcf_channel_quant)."""
    if shift.size and (shift.min() < SHIFT_MIN or shift.max() > SHIFT_MAX):
        raise IRError(f"requantization shifts must lie in [{SHIFT_MIN}, {SHIFT_MAX}], got {shift.min()}..{shift.max()}")
    return shift.astype(np.int8)


def norm_gamma(gamma: np.ndarray) -> np.ndarray:
    """LayerNorm gammas as the kernels take them: int16, 2 bytes of flash each (PTQ scales them into
    [-LN_GAMMA_MAX, LN_GAMMA_MAX]). Betas stay int32: trained ones pass 2^23 (docs/kernels.md)."""
    info = np.iinfo(np.int16)
    if gamma.size and (gamma.min() < info.min or gamma.max() > info.max):
        raise IRError(f"LayerNorm gammas must fit int16 [{info.min}, {info.max}], got {gamma.min()}..{gamma.max()}")
    return gamma.astype(np.int16)


def decomposed_image_offset(arch: ArchConfig) -> int | None:
    """Where the image goes in a buffer shared with the token matrix (tokens at 0), or None if it cannot.

    Patch row r is stored after it is computed, over bytes [0, end of its tokens); image patch rows r + 1.. must
    still be intact then. Right-aligning the image (offset = max(tokens, image) - image) satisfies that whenever
    tokens_end(r) <= offset + (r + 1) * patch_row_bytes for every row.
    """
    dim, grid = arch.embed_dim, arch.grid
    first = arch.num_tokens - arch.num_patches
    image = arch.image_size**2 * arch.channels
    row_bytes = arch.patch_size * arch.image_size * arch.channels
    offset = max(arch.num_tokens * dim, image) - image
    offset -= offset % 4
    fits = all((first + (r + 1) * grid) * dim <= offset + (r + 1) * row_bytes for r in range(grid))
    return offset if fits else None


@dataclass(frozen=True)
class Schedule:
    """Which memory-scheduling techniques a lowering applies (each keeps the outputs bit-identical)."""

    fuse_blocks: bool  # operator integration: per-token attention/MLP blocks, K and V the only sequence buffers
    overwrite_tokens: bool  # block outputs and element-wise ops written over their input, token by token
    decompose_patch_embed: bool  # patch rows embedded one at a time over the image rows already consumed
    full_scores: bool = False  # keep the heads x N x N score matrix, as a layer-by-layer interpreter does
    stream_input: bool = False  # the image arrives one patch row at a time (serial): only that strip is held


# Runnable schedules; the ablation ladder is naive -> integrated -> blocks -> fused, one technique per step.
SCHEDULES: dict[str, Schedule] = {
    "naive": Schedule(fuse_blocks=False, overwrite_tokens=False, decompose_patch_embed=False, full_scores=True),
    "inplace": Schedule(fuse_blocks=False, overwrite_tokens=True, decompose_patch_embed=False, full_scores=True),
    "layer": Schedule(fuse_blocks=False, overwrite_tokens=True, decompose_patch_embed=False),
    "integrated": Schedule(fuse_blocks=True, overwrite_tokens=False, decompose_patch_embed=False),
    "blocks": Schedule(fuse_blocks=True, overwrite_tokens=True, decompose_patch_embed=False),
    "fused": Schedule(fuse_blocks=True, overwrite_tokens=True, decompose_patch_embed=True),
    "stream": Schedule(fuse_blocks=True, overwrite_tokens=True, decompose_patch_embed=False, stream_input=True),
}


# The fused attention half's op kinds: K and V for all heads; one head's at a time plus every token's context
# (smaller when heads > 2); the same normalising once per token (faster, tokens x width more scratch).
ATTENTION_KINDS = ("attention_block", "attention_block_heads", "attention_block_heads_once")
Attention = str | Sequence[str] | None


@dataclass(frozen=True)
class Variants:
    """The kernel variants of a lowering's fused ops: what codegen.variants chooses, the graph's meta and a build's
    manifest record, and eval and profile lower again."""

    # The attention op kind of every block, or one per block; None: the least memory, K and V per head or for all
    # heads (all heads on a tie: less work).
    attention: Attention = None
    widened: tuple[str, ...] = ()  # linears (named as in `fused_linears`) with weights widened to int16
    block_tokens: int = BLOCKS_DEFAULT  # the fused ops' token block (scratch.BLOCK_CHOICES)
    # The patch-row op in token blocks (scratch.PATCH_BLOCKS: its scratch holds a widened block of four patches,
    # 8 bytes a value, for fewer instructions). None: in token blocks unless that makes the arena larger (only
    # where the patch embedding is the graph's peak).
    patch_blocks: bool | None = None

    @classmethod
    def of(cls, meta: dict[str, Any]) -> Variants:
        """The variants a graph's meta (or a build's manifest) records; what older builds recorded, else the
        defaults."""
        kinds = meta.get("attention")
        return cls(tuple(kinds) if kinds else None, tuple(meta.get("widened", ())),
                   int(meta.get("block_tokens", BLOCKS_DEFAULT)), meta.get("patch_blocks"))  # fmt: skip


DEFAULT_VARIANTS = Variants()


def lower(model: QViT, name: str = "model", schedule: str = "fused", variants: Variants = DEFAULT_VARIANTS) -> Graph:
    """The graph of `model` under a named schedule (SCHEDULES) with the fused ops' kernel variants; verified.
    `mcuformer.codegen.variants` chooses the variants."""
    if schedule not in SCHEDULES:
        raise IRError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
    if variants.block_tokens not in BLOCK_CHOICES:
        raise IRError(f"block_tokens {variants.block_tokens}: one of {BLOCK_CHOICES}")
    options = SCHEDULES[schedule]
    if variants.patch_blocks is None:
        if not _has_patch_rows(model.arch, options):
            return lower(model, name, schedule, replace(variants, patch_blocks=False))
        from mcuformer.codegen.planner import plan_memory

        both = [lower(model, name, schedule, replace(variants, patch_blocks=b)) for b in (True, False)]
        return min(both, key=lambda graph: plan_memory(graph).arena_bytes)  # token blocks on a tie
    depth = len(model.blocks)
    attention = variants.attention
    if attention is not None or not options.fuse_blocks:
        kinds = (attention,) * depth if attention is None or isinstance(attention, str) else tuple(attention)
        unknown = set(kinds) - set(ATTENTION_KINDS) - {None}
        if unknown or len(kinds) != depth:
            raise IRError(f"attention kinds {kinds} for {depth} blocks; each one of {', '.join(ATTENTION_KINDS)}")
        return _lower(model, name, schedule, options, kinds, variants)
    from mcuformer.codegen.planner import plan_memory

    graphs = [_lower(model, name, schedule, options, (kind,) * depth, variants) for kind in ATTENTION_KINDS[:2]]
    return min(graphs, key=lambda graph: plan_memory(graph).arena_bytes)


def _has_patch_rows(arch: ArchConfig, options: Schedule) -> bool:
    """Whether the graph's patch embedding is a patch-row op whose patches token blocks can take (at least a block
    of four patches a row)."""
    if not options.decompose_patch_embed or options.stream_input or decomposed_image_offset(arch) is None:
        return False
    dims = {"patch": arch.patch_size, "channels": arch.channels, "width": arch.image_size, "blocks": PATCH_BLOCKS}
    return patch_row_blocks(dims)


def _lower(model: QViT, name: str, schedule: str, options: Schedule, attention: Sequence[str | None],
           variants: Variants) -> Graph:  # fmt: skip
    arch = model.arch
    graph = Graph(name)
    widened = variants.widened
    unknown = set(widened) - set(fused_linears(model)) if widened else set()
    if unknown or (widened and not options.fuse_blocks):
        raise IRError(f"cannot widen {sorted(unknown) or sorted(widened)}: only the fused blocks' linears "
                      f"({', '.join(fused_linears(model)[:3])}, ...) take widened weights")  # fmt: skip
    b = _Builder(graph, options, frozenset(widened), variants.block_tokens)
    dim, patches = arch.embed_dim, arch.num_patches
    image_shape = (arch.image_size, arch.image_size, arch.channels)
    first = arch.num_tokens - patches  # rows before the patch tokens (the class token)
    image_offset = decomposed_image_offset(arch) if options.decompose_patch_embed else None
    if options.stream_input:  # one strip of patch_size image rows: the rest of the image is never on the device
        graph.input = b.tensor("image_rows", (arch.patch_size, arch.image_size, arch.channels))
        tokens = b.tensor("tokens", (arch.num_tokens, dim))
    elif image_offset is None:
        graph.input = b.tensor("image", image_shape)
        tokens = b.tensor("tokens", (arch.num_tokens, dim))
    else:  # patch-embedding decomposition: tokens overwrite image rows already consumed
        tokens = b.tensor("tokens", (arch.num_tokens, dim))
        graph.input = graph.add_tensor(TensorSpec("image", image_shape, anchor=(tokens, image_offset)))
    patch_rows = b.tensor("patch_tokens", (patches, dim), alias_of=tokens, offset=first * dim)
    pe = model.patch_embed
    consts = tuple(
        graph.add_const(f"patch_embed_{s}", a)
        for s, a in zip("wbms", (pe.weight, pe.bias, pe.mult, channel_shifts(pe.shift)), strict=True)
    )
    attrs = {"patch": arch.patch_size, "in_zp": pe.input.zero_point, "out_zp": pe.output.zero_point}
    if options.stream_input:
        attrs["rows"] = arch.grid
        graph.add_op(Op("patch_embed", "patch_embed_stream", (graph.input, *consts), patch_rows, attrs))
    elif image_offset is None:
        graph.add_op(Op("patch_embed", "patch_embed", (graph.input, *consts), patch_rows, attrs))
    else:
        attrs["blocks"] = PATCH_BLOCKS if variants.patch_blocks else 0
        row_scratch = b.kernel_scratch("patch_row_scratch", "patch_embed_rows", (graph.input, *consts), attrs)
        graph.add_op(Op("patch_embed", "patch_embed_rows", (graph.input, *consts), patch_rows, attrs, (row_scratch,)))
    pos = graph.add_const("pos_embed", model.pos_embed)
    embedded = b.tensor("embedded", (patches, dim), alias_of=patch_rows)
    add = model.pos_add
    graph.add_op(Op("pos_add", "add", (patch_rows, pos), embedded,
                    {"a_zp": add.a.zero_point, "b_zp": add.b.zero_point, "a_mult": add.a_mult,
                     "b_mult": add.b_mult, "shift": add.shift, "out_zp": add.output.zero_point}))  # fmt: skip
    if model.cls_row is not None:
        cls_slot = b.tensor("cls_slot", (dim,), alias_of=tokens, offset=0)
        graph.add_op(Op("cls_token", "copy", (graph.add_const("cls_row", model.cls_row),), cls_slot))
    x = tokens
    for index, block in enumerate(model.blocks):
        kind = attention[index] or "attention_block"
        x = b.fused_block(index, x, block, kind) if options.fuse_blocks else b.block(index, x, block)
    if model.pool is None:
        pooled = b.tensor("pooled", (dim,), alias_of=x, offset=0)  # the class token row, no copy
        x_for_norm = pooled
    else:
        p = model.pool
        x_for_norm = b.tensor("pooled", (dim,))
        graph.add_op(Op("mean_pool", "mean_pool", (x,), x_for_norm,
                        {"in_zp": p.input.zero_point, "mult": p.mult, "shift": p.shift,
                         "out_zp": p.output.zero_point}))  # fmt: skip
    h = b.layernorm("norm", x_for_norm, model.norm)
    graph.output = b.linear("head", h, model.head)
    graph.meta = {"arch": arch.to_dict(), "logits_scale": model.logits.scale,
                  "logits_zero_point": model.logits.zero_point, "schedule": schedule,
                  "image_shape": image_shape, "stream_rows": arch.grid if options.stream_input else 0,
                  "attention": [op.kind for op in graph.ops if op.kind in ATTENTION_KINDS],
                  "widened": sorted(widened), "block_tokens": variants.block_tokens,
                  "patch_blocks": bool(variants.patch_blocks)}  # fmt: skip
    verify(graph)
    return graph


def fused_linears(model: QViT) -> list[str]:
    """The names of the linears inside the fused ops (block by block; the const prefix of each), the ones
    `Variants.widened` may name."""
    names = []
    for index, block in enumerate(model.blocks):
        p = f"b{index}"
        layers = {"qkv_v": block.qkv_v, "q": block.q, "k": block.k, "v": block.v, "proj_v": block.proj.v,
                  "proj_u": block.proj.u, "fc1_v": block.fc1.v, "fc1_u": block.fc1.u, "fc2_v": block.fc2.v,
                  "fc2_u": block.fc2.u}  # fmt: skip
        names += [f"{p}_{role}" for role, layer in layers.items() if layer is not None]
    return names
