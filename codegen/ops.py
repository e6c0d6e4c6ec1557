"""The op table: what the compiler knows about each kind of kernel op, one row per kind.

A row gives the op's operands (their order in `Op.inputs`) and attributes, the C kernel it calls with its
arguments, the C structs generated for it, its multiply-accumulates, the scratch its kernel asks for and the kernel
symbols it links (code size). verify, lower, emit and the model template, the memory report, code size, the
profiler, the search's cost and the hotspot tool read it. The structs are written with designated initialisers, so
their field order lives in mcf_kernels.h and mcf_fused.h alone.

Adding an op kind: a row here, its kernel in firmware/kernels, and the lowering that emits it (lower.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcuformer.codegen import scratch
from mcuformer.codegen.ir import Graph, Op

Dims = dict[str, int]
Init = Any  # a C initialiser: an int, a C expression (str), a dict of fields (nested) or a Static


@dataclass(frozen=True)
class Static:
    """A struct emitted as its own `static const` and passed by address (an optional low-rank factor)."""

    ctype: str
    init: Init


class Operands:
    """One op's operands as C expressions (by role, without the '$'/'?' marks), its attributes and its dims."""

    def __init__(self, op: Op, symbols: dict[str, str], dims: Dims, widened: set[str] | None = None) -> None:
        self.symbols = symbols
        self.attrs = op.attrs
        self.dims = dims
        self.widened = widened or set()  # roles whose const is widened to int16 (a linear's "<layer>.weight")

    def __getitem__(self, role: str) -> str:
        return self.symbols[role]

    def present(self, layer: str) -> bool:
        return self.symbols[f"{layer}.weight"] != "NULL"

    def fields(self, *names: str, prefix: str = "") -> dict[str, int]:
        return {name: self.attrs[prefix + name] for name in names}


@dataclass(frozen=True)
class Struct:
    """A `static const` struct generated per op, named `<op>_<suffix>`, passed as `&<op>_<suffix>`."""

    suffix: str
    ctype: str
    build: Callable[[Operands], Init]


@dataclass(frozen=True)
class OpKind:
    roles: tuple[str, ...]  # operands in Op.inputs order; '$': a const, '?': optional (given as "")
    attrs: tuple[str, ...]  # Op.attrs keys ("layer.field" inside a fused op)
    kernel: str  # the C entry point
    # Its arguments: "&<suffix>" a struct, a role, "out", "out_row" (a streamed row's tokens), "size" (output
    # bytes), "scratch<i>" (the op's i-th scratch operand).
    args: tuple[str, ...]
    structs: tuple[Struct, ...] = ()
    shapes: Callable[[Graph, Op], str | None] | None = None  # what is wrong with the op's shapes, or None
    dims: Callable[[Graph, Op], Dims] | None = None  # the kernel's dims struct fields
    macs: Callable[[Dims, dict[str, int]], int] | None = None  # from dims and attrs; None: no MACs
    scratch: Callable[..., int] | None = None  # the kernel's _get_buffer_size, called with the dims fields
    links: tuple[str, ...] = ()  # further kernel symbols the op links (helpers it calls)
    in_place_block: bool = False  # runs on the residual stream in place (copied to its output first if separate)

    @property
    def symbols(self) -> tuple[str, ...]:
        extra = (f"{self.kernel}_get_buffer_size",) if self.scratch else ()
        return (self.kernel, *extra, *self.links)


# ----------------------------------------------------------------------------------------------- operand roles


def _linear_roles(layer: str, optional: bool = False) -> tuple[str, ...]:
    """Weight, bias, multipliers and shifts of one linear inside a fused op ('?': may be absent, given as "")."""
    return tuple(f"{'?' if optional else ''}${layer}.{part}" for part in ("weight", "bias", "mult", "shift"))


def _linear_attrs(*layers: str) -> tuple[str, ...]:
    return tuple(f"{layer}.{zp}" for layer in layers for zp in ("in_zp", "out_zp"))


_WEIGHTS = ("$weight", "$bias", "$mult", "$shift")
_LINEAR_PARAMS = ("in_zp", "out_zp")
_NORM_PARAMS = ("in_zp", "eps", "mult", "shift", "out_zp")
_ADD_PARAMS = ("a_zp", "b_zp", "a_mult", "b_mult", "shift", "out_zp")
_ATTENTION_PARAMS = ("q_zp", "k_zp", "v_zp", "score_mult", "score_shift", "score_zp", "out_mult", "out_shift",
                     "out_zp")  # fmt: skip
_ATTENTION_BLOCK_ROLES = ("x", "$norm.gamma", "$norm.beta", *_linear_roles("qkv_v", True), *_linear_roles("q"),
                          *_linear_roles("k"), *_linear_roles("v"), "$attn.exp_table",
                          *_linear_roles("proj_v", True), *_linear_roles("proj_u"))  # fmt: skip
_ATTENTION_BLOCK_ATTRS = ("heads", "block_tokens", *(f"norm.{a}" for a in _NORM_PARAMS),
                          *_linear_attrs("qkv_v", "q", "k", "v"), *(f"attn.{a}" for a in _ATTENTION_PARAMS),
                          *_linear_attrs("proj_v", "proj_u"), *(f"res.{a}" for a in _ADD_PARAMS))  # fmt: skip
_MLP_BLOCK_ROLES = ("x", "$norm.gamma", "$norm.beta", *_linear_roles("fc1_v", True), *_linear_roles("fc1_u"),
                    "$gelu.table", *_linear_roles("fc2_v", True), *_linear_roles("fc2_u"))  # fmt: skip
_MLP_BLOCK_ATTRS = ("block_tokens", *(f"norm.{a}" for a in _NORM_PARAMS),
                    *_linear_attrs("fc1_v", "fc1_u", "fc2_v", "fc2_u"), *(f"res.{a}" for a in _ADD_PARAMS))  # fmt: skip


def operand_map(op: Op) -> dict[str, str]:
    """Role (without marks) -> operand name ("" for an absent optional one)."""
    return dict(zip((r.lstrip("?$") for r in OPS[op.kind].roles), op.inputs, strict=True))


# ------------------------------------------------------------------------------------------------------ dims


def _rows(shape: tuple[int, ...]) -> int:
    return math.prod(shape[:-1]) if len(shape) > 1 else 1


def _linear_dims(graph: Graph, op: Op) -> Dims:
    x, w = graph.shape(op.inputs[0]), graph.shape(op.inputs[1])
    return {"tokens": _rows(x), "in_ch": w[1], "out_ch": w[0]}


def _patch_embed_dims(graph: Graph, op: Op) -> Dims:
    height, width, channels = graph.shape(op.inputs[0])
    return {"height": height, "width": width, "channels": channels, "patch": op.attrs["patch"],
            "out_ch": graph.shape(op.inputs[1])[0], "blocks": op.attrs.get("blocks", 0)}  # fmt: skip


def _token_dims(graph: Graph, op: Op) -> Dims:
    x = graph.shape(op.inputs[0])
    return {"tokens": _rows(x), "channels": x[-1]}


def _attention_dims(graph: Graph, op: Op) -> Dims:
    tokens, channels = graph.shape(op.inputs[0])
    return {"tokens": tokens, "channels": channels, "heads": op.attrs["heads"]}


def _rank(graph: Graph, operands: dict[str, str], layer: str) -> int:
    """The rank of a low-rank factor (its output width), 0 when the layer is full rank (no factor)."""
    weight = operands[f"{layer}.weight"]
    return graph.shape(weight)[0] if weight else 0


def _attention_block_dims(graph: Graph, op: Op) -> Dims:
    operands = operand_map(op)
    tokens, channels = graph.shape(op.inputs[0])
    return {"tokens": tokens, "channels": channels, "heads": op.attrs["heads"],
            "qkv_rank": _rank(graph, operands, "qkv_v"), "proj_rank": _rank(graph, operands, "proj_v"),
            "block_tokens": op.attrs["block_tokens"]}  # fmt: skip


def _mlp_block_dims(graph: Graph, op: Op) -> Dims:
    operands = operand_map(op)
    tokens, channels = graph.shape(op.inputs[0])
    return {"tokens": tokens, "channels": channels, "hidden": graph.shape(operands["fc1_u.weight"])[0],
            "fc1_rank": _rank(graph, operands, "fc1_v"), "fc2_rank": _rank(graph, operands, "fc2_v"),
            "block_tokens": op.attrs["block_tokens"]}  # fmt: skip


# ------------------------------------------------------------------------------------------------------ MACs
# A MAC is one int8 x int8 product accumulated. Element-wise work (LayerNorm, softmax, GELU table, residual adds,
# copies) counts none: its time shows as instructions on no MACs.


def _factored_macs(tokens: int, fan_in: int, fan_out: int, rank: int) -> int:
    return tokens * (fan_in * fan_out if rank == 0 else rank * (fan_in + fan_out))


def _attention_block_macs(d: Dims, attrs: dict[str, int]) -> int:
    n, c, r = d["tokens"], d["channels"], d["qkv_rank"]
    qkv = 3 * n * c * c if r == 0 else n * c * r + 3 * n * r * c  # the shared V factor once, then q, k, v
    return qkv + _factored_macs(n, c, c, d["proj_rank"]) + 2 * n * n * c  # + scores and context, all heads


def _mlp_block_macs(d: Dims, attrs: dict[str, int]) -> int:
    n, c, hidden = d["tokens"], d["channels"], d["hidden"]
    return _factored_macs(n, c, hidden, d["fc1_rank"]) + _factored_macs(n, hidden, c, d["fc2_rank"])


def _patch_embed_macs(d: Dims, attrs: dict[str, int]) -> int:
    # every pixel value meets every output channel once; a streamed op runs once per patch row
    return d["height"] * d["width"] * d["channels"] * d["out_ch"] * attrs.get("rows", 1)


# ----------------------------------------------------------------------------------------------- shape checks
# Each returns what is wrong with the op's shapes, or None (verify names the op).


def _linear_shapes(graph: Graph, op: Op) -> str | None:
    x, w = graph.shape(op.inputs[0]), graph.shape(op.inputs[1])
    if x[-1] != w[1] or graph.shape(op.output) != (*x[:-1], w[0]):
        return f"linear {x} x {w} cannot give {graph.shape(op.output)}"
    for name in op.inputs[2:5]:
        if graph.shape(name) != (w[0],):
            return f"per-channel operand {name} must have {w[0]} entries"
    return None


def _patch_embed_shapes(graph: Graph, op: Op) -> str | None:
    (h, w, c), p, out = graph.shape(op.inputs[0]), op.attrs["patch"], graph.shape(op.output)
    weight = graph.shape(op.inputs[1])
    if "rows" in op.attrs:  # streamed: the input is one strip of patch rows, run `rows` times
        if h != p or w % p or weight[1] != p * p * c or out != (op.attrs["rows"] * (w // p), weight[0]):
            return f"{op.attrs['rows']} strips of {h}x{w}x{c} with {weight} cannot give {out}"
    elif h % p or w % p or weight[1] != p * p * c or out != ((h // p) * (w // p), weight[0]):
        return f"patch embedding of {h}x{w}x{c} with {weight} cannot give {out}"
    return None


def _block_shapes(graph: Graph, op: Op) -> str | None:
    if len(graph.shape(op.inputs[0])) != 2 or graph.shape(op.output) != graph.shape(op.inputs[0]):
        return "a fused block maps a [tokens, channels] residual stream to one of the same shape"
    source, target = graph.tensors[op.inputs[0]], graph.tensors[op.output]
    if graph.root(op.output) == graph.root(op.inputs[0]) and source.offset != target.offset:
        return "a fused block runs in place or on a separate output, never partly overlapping"
    return None


def _elementwise_shapes(graph: Graph, op: Op) -> str | None:
    size = math.prod(graph.shape(op.inputs[0]))
    if graph.tensors[op.output].nbytes != size:
        return f"{op.kind} output size differs from its input"
    if op.kind == "add" and math.prod(graph.shape(op.inputs[1])) != size:
        return "add operands differ in size"
    return None


def _attention_shapes(graph: Graph, op: Op) -> str | None:
    q, k, v = (graph.shape(n) for n in op.inputs[:3])
    out = graph.shape(op.output)
    if not q == k == v == out or q[-1] % op.attrs["heads"]:
        return f"attention shapes {q} {k} {v} -> {out} (heads {op.attrs['heads']})"
    return None


def _mean_pool_shapes(graph: Graph, op: Op) -> str | None:
    x = graph.shape(op.inputs[0])
    return None if graph.shape(op.output) == (x[-1],) else f"mean pool of {x} cannot give {graph.shape(op.output)}"


# -------------------------------------------------------------------------------------------------- structs


def _linear_layer(o: Operands, layer: str) -> Init:
    """mcf_linear_layer of one linear inside a fused op."""
    weight = o[f"{layer}.weight"]
    widened = f"{layer}.weight" in o.widened  # exactly one of the two layouts (mcf_fused.h)
    return {"params": o.fields(*_LINEAR_PARAMS, prefix=f"{layer}."),
            "quant": {"mult": o[f"{layer}.mult"], "shift": o[f"{layer}.shift"]},
            "weight": "NULL" if widened else weight, "weight16": weight if widened else "NULL",
            "bias": o[f"{layer}.bias"]}  # fmt: skip


def _optional_layer(o: Operands, layer: str) -> Init:
    return Static("mcf_linear_layer", _linear_layer(o, layer)) if o.present(layer) else "NULL"


def _norm_layer(o: Operands) -> Init:
    return {"params": o.fields(*_NORM_PARAMS, prefix="norm."), "gamma": o["norm.gamma"], "beta": o["norm.beta"]}


def _attention_block_params(o: Operands) -> Init:
    return {
        "norm": _norm_layer(o),
        "qkv_v": _optional_layer(o, "qkv_v"),
        **{part: _linear_layer(o, part) for part in "qkv"},
        "attention": o.fields(*_ATTENTION_PARAMS, prefix="attn."),
        "exp_table": o["attn.exp_table"],
        "proj": {"v": _optional_layer(o, "proj_v"), "u": _linear_layer(o, "proj_u")},
        "residual": o.fields(*_ADD_PARAMS, prefix="res."),
    }


def _mlp_block_params(o: Operands) -> Init:
    return {
        "norm": _norm_layer(o),
        "fc1": {"v": _optional_layer(o, "fc1_v"), "u": _linear_layer(o, "fc1_u")},
        "gelu_table": o["gelu.table"],
        "fc2": {"v": _optional_layer(o, "fc2_v"), "u": _linear_layer(o, "fc2_u")},
        "residual": o.fields(*_ADD_PARAMS, prefix="res."),
    }


def _dims(ctype: str) -> Struct:
    return Struct("dims", ctype, lambda o: o.dims)


def _params(ctype: str, *names: str) -> Struct:
    return Struct("params", ctype, lambda o: o.fields(*names))


_QUANT = Struct("quant", "mcf_channel_quant", lambda o: {"mult": o["mult"], "shift": o["shift"]})
_LINEAR_STRUCTS = (_params("mcf_linear_params", *_LINEAR_PARAMS), _QUANT)
_PATCH_EMBED_ARGS = ("&dims", "&params", "&quant", "image", "weight", "bias")

# ------------------------------------------------------------------------------------------------- the table

# The fused kernels call these kernels, and in the DSP variant its support files (mcf_dsp_*.c: one copy of the
# helpers they share; code units, not symbols).
_FUSED_LINKS = ("mcf_layernorm_s8", "mcf_linear_s8", "mcf_linear_w16_s8", "mcf_add_s8", "mcf_dsp_block",
                "mcf_dsp_fused", "mcf_dsp_layernorm")  # fmt: skip
# The per-head kernels' DSP body is a support file of its own (one copy for both of them).
_HEADS_LINKS = ("mcf_attention_row_s8", "mcf_softmax_s8", *_FUSED_LINKS, "mcf_dsp_heads")
_ATTENTION_BLOCK_STRUCTS = (
    _dims("mcf_attention_block_dims"),
    Struct("params", "mcf_attention_block_params", _attention_block_params),
)

OPS: dict[str, OpKind] = {
    "linear": OpKind(
        roles=("input", *_WEIGHTS), attrs=_LINEAR_PARAMS, kernel="mcf_linear_s8",
        args=("&dims", "&params", "&quant", "input", "weight", "bias", "out"),
        structs=(_dims("mcf_linear_dims"), *_LINEAR_STRUCTS), shapes=_linear_shapes, dims=_linear_dims,
        macs=lambda d, a: d["tokens"] * d["in_ch"] * d["out_ch"],
    ),
    "patch_embed": OpKind(
        roles=("image", *_WEIGHTS), attrs=("patch", *_LINEAR_PARAMS), kernel="mcf_patch_embed_s8",
        args=(*_PATCH_EMBED_ARGS, "out"), structs=(_dims("mcf_patch_embed_dims"), *_LINEAR_STRUCTS),
        shapes=_patch_embed_shapes, dims=_patch_embed_dims, macs=_patch_embed_macs,
    ),
    # Patch rows embedded one at a time, each written over image rows already consumed (decomposed embedding).
    "patch_embed_rows": OpKind(  # attr blocks: 0, or token blocks (scratch.PATCH_BLOCKS, a kernel variant)
        roles=("image", *_WEIGHTS), attrs=("patch", *_LINEAR_PARAMS, "blocks"), kernel="mcf_patch_embed_rows_s8",
        args=(*_PATCH_EMBED_ARGS, "out", "scratch0"), structs=(_dims("mcf_patch_embed_dims"), *_LINEAR_STRUCTS),
        shapes=_patch_embed_shapes, dims=_patch_embed_dims, macs=_patch_embed_macs,
        scratch=scratch.patch_embed_rows_scratch_bytes, links=("mcf_patch_embed_s8", "mcf_copy_s8", "mcf_dsp_block"),
    ),
    # Run once per received strip of patch rows (the image streamed over the serial line): `rows` strips.
    "patch_embed_stream": OpKind(
        roles=("image", *_WEIGHTS), attrs=("patch", *_LINEAR_PARAMS, "rows"), kernel="mcf_patch_embed_s8",
        args=(*_PATCH_EMBED_ARGS, "out_row"), structs=(_dims("mcf_patch_embed_dims"), *_LINEAR_STRUCTS),
        shapes=_patch_embed_shapes, dims=_patch_embed_dims, macs=_patch_embed_macs,
    ),
    "add": OpKind(  # b may be a const
        roles=("a", "b"), attrs=_ADD_PARAMS, kernel="mcf_add_s8", args=("&params", "a", "b", "out", "size"),
        structs=(_params("mcf_add_params", *_ADD_PARAMS),), shapes=_elementwise_shapes,
    ),
    "lut": OpKind(
        roles=("input", "$table"), attrs=(), kernel="mcf_lut_s8", args=("input", "table", "out", "size"),
        shapes=_elementwise_shapes,
    ),
    "layernorm": OpKind(
        roles=("input", "$gamma", "$beta"), attrs=_NORM_PARAMS, kernel="mcf_layernorm_s8",
        args=("&dims", "&params", "input", "gamma", "beta", "out"),
        structs=(_dims("mcf_dims"), _params("mcf_layernorm_params", *_NORM_PARAMS)), shapes=_elementwise_shapes,
        dims=_token_dims, links=("mcf_dsp_layernorm",),
    ),
    "attention": OpKind(
        roles=("q", "k", "v", "$exp_table"), attrs=("heads", *_ATTENTION_PARAMS), kernel="mcf_attention_s8",
        args=("&dims", "&params", "q", "k", "v", "exp_table", "out", "scratch0"),
        structs=(_dims("mcf_attention_dims"), _params("mcf_attention_params", *_ATTENTION_PARAMS)),
        shapes=_attention_shapes, dims=_attention_dims,
        macs=lambda d, a: 2 * d["tokens"] ** 2 * d["channels"],  # scores and context, all heads
        scratch=scratch.attention_scratch_bytes, links=("mcf_attention_row_s8", "mcf_softmax_s8"),
    ),
    "mean_pool": OpKind(
        roles=("input",), attrs=("in_zp", "mult", "shift", "out_zp"), kernel="mcf_mean_pool_s8",
        args=("&dims", "&params", "input", "out"),
        structs=(_dims("mcf_dims"), _params("mcf_pool_params", "in_zp", "mult", "shift", "out_zp")),
        shapes=_mean_pool_shapes, dims=_token_dims,
    ),
    "copy": OpKind(  # the input may be a const
        roles=("input",), attrs=(), kernel="mcf_copy_s8", args=("input", "out", "size"), shapes=_elementwise_shapes,
    ),
    # Fused per-token blocks (operator integration + token overwriting), in place on the residual stream x.
    "attention_block": OpKind(
        roles=_ATTENTION_BLOCK_ROLES, attrs=_ATTENTION_BLOCK_ATTRS, kernel="mcf_attention_block_s8",
        args=("&dims", "&params", "out", "scratch0", "scratch1", "scratch2"),  # K, V, the kernel's scratch
        structs=_ATTENTION_BLOCK_STRUCTS, shapes=_block_shapes, dims=_attention_block_dims,
        macs=_attention_block_macs, scratch=scratch.attention_block_scratch_bytes,
        links=("mcf_attention_row_s8", "mcf_softmax_s8", *_FUSED_LINKS), in_place_block=True,
    ),
    # The same with K and V one head at a time (less memory when heads > 2; see mcf_attention_block_heads_s8).
    "attention_block_heads": OpKind(
        roles=_ATTENTION_BLOCK_ROLES, attrs=_ATTENTION_BLOCK_ATTRS, kernel="mcf_attention_block_heads_s8",
        args=("&dims", "&params", "out", "scratch0", "scratch1", "scratch2", "scratch3"),  # K, V, context, scratch
        structs=_ATTENTION_BLOCK_STRUCTS, shapes=_block_shapes, dims=_attention_block_dims,
        macs=_attention_block_macs, scratch=scratch.attention_block_heads_scratch_bytes,
        links=_HEADS_LINKS, in_place_block=True,
    ),
    # Per head, normalising once: norm1 (and the qkv V factor) once per token, not once per head and token, for
    # tokens x width more scratch (the speed side of the planner's trade; mcf_attention_block_heads_once_s8).
    "attention_block_heads_once": OpKind(
        roles=_ATTENTION_BLOCK_ROLES, attrs=_ATTENTION_BLOCK_ATTRS, kernel="mcf_attention_block_heads_once_s8",
        args=("&dims", "&params", "out", "scratch0", "scratch1", "scratch2", "scratch3"),  # K, V, context, scratch
        structs=_ATTENTION_BLOCK_STRUCTS, shapes=_block_shapes, dims=_attention_block_dims,
        macs=_attention_block_macs, scratch=scratch.attention_block_heads_once_scratch_bytes,
        links=(*_HEADS_LINKS, "mcf_attention_block_heads_s8_get_buffer_size"), in_place_block=True,
    ),
    "mlp_block": OpKind(
        roles=_MLP_BLOCK_ROLES, attrs=_MLP_BLOCK_ATTRS, kernel="mcf_mlp_block_s8",
        args=("&dims", "&params", "out", "scratch0"),
        structs=(_dims("mcf_mlp_block_dims"), Struct("params", "mcf_mlp_block_params", _mlp_block_params)),
        shapes=_block_shapes, dims=_mlp_block_dims, macs=_mlp_block_macs, scratch=scratch.mlp_block_scratch_bytes,
        links=("mcf_lut_s8", *_FUSED_LINKS), in_place_block=True,
    ),
}  # fmt: skip


def op_dims(graph: Graph, op: Op) -> Dims:
    """The fields of the op's kernel dims struct ({} for kernels without one)."""
    dims = OPS[op.kind].dims
    return dims(graph, op) if dims else {}


def op_macs(graph: Graph, op: Op) -> int:
    """MACs of one op (0 for ops without multiply-accumulates)."""
    macs = OPS[op.kind].macs
    return macs(op_dims(graph, op), op.attrs) if macs else 0


def graph_macs(graph: Graph) -> list[int]:
    """MACs of every op, in op order."""
    return [op_macs(graph, op) for op in graph.ops]


def kernel_scratch_bytes(graph: Graph, op: Op) -> int:
    """What the op's kernel asks for in its _get_buffer_size (the op's scratch operands need not exist yet)."""
    sizer = OPS[op.kind].scratch
    if sizer is None:
        raise ValueError(f"{op.kind} kernels take no scratch")
    return sizer(**op_dims(graph, op))
