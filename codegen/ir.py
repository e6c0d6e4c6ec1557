"""The graph IR: int8 tensors with (optional) aliasing, constant arrays, and a straight list of kernel ops.

A tensor may be a view (`alias_of` + byte `offset`) into another tensor's memory: that is how in-place ops
(out = a + b written over a) and row views (patch tokens written into rows 1.. of the token matrix) are
expressed. The memory planner places root tensors; views follow their root.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mcuformer.errors import McuformerError


class IRError(McuformerError):
    pass


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    alias_of: str | None = None  # root tensor whose memory this tensor views
    offset: int = 0  # byte offset of the view inside its root
    scratch: bool = False  # kernel scratch: lives during one op only
    # Placed at a fixed offset from another root's buffer, overlapping it on purpose (the image under the token
    # matrix that the decomposed patch embedding writes over consumed rows): (that root, byte offset).
    anchor: tuple[str, int] | None = None

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


@dataclass(frozen=True, eq=False)
class Const:
    name: str
    array: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)


def _linear_roles(layer: str, optional: bool = False) -> tuple[str, ...]:
    """Weight, bias, multipliers and shifts of one linear inside a fused op ('?': may be absent, given as "")."""
    return tuple(f"{'?' if optional else ''}${layer}.{part}" for part in ("weight", "bias", "mult", "shift"))


def _linear_attrs(*layers: str) -> tuple[str, ...]:
    return tuple(f"{layer}.{zp}" for layer in layers for zp in ("in_zp", "out_zp"))


_NORM_ATTRS = tuple(f"norm.{a}" for a in ("in_zp", "eps", "mult", "shift", "out_zp"))
_RES_ATTRS = tuple(f"res.{a}" for a in ("a_zp", "b_zp", "a_mult", "b_mult", "shift", "out_zp"))

# Operand roles per op kind: the order of `Op.inputs`. Names that are consts are marked with '$'.
OP_SIGNATURES: dict[str, tuple[str, ...]] = {
    "patch_embed": ("image", "$weight", "$bias", "$mult", "$shift"),
    "patch_embed_rows": ("image", "$weight", "$bias", "$mult", "$shift"),  # may write over consumed image rows
    "patch_embed_stream": ("image", "$weight", "$bias", "$mult", "$shift"),  # run once per received patch row
    "linear": ("input", "$weight", "$bias", "$mult", "$shift"),
    "add": ("a", "b"),  # b may be a const
    "lut": ("input", "$table"),
    "layernorm": ("input", "$gamma", "$beta"),
    "attention": ("q", "k", "v", "$exp_table"),
    "mean_pool": ("input",),
    "copy": ("input",),  # input may be a const
    # Fused per-token blocks (operator integration + token overwriting), in place on the residual stream x.
    "attention_block": ("x", "$norm.gamma", "$norm.beta", *_linear_roles("qkv_v", True), *_linear_roles("q"),
                        *_linear_roles("k"), *_linear_roles("v"), "$attn.exp_table", *_linear_roles("proj_v", True),
                        *_linear_roles("proj_u")),
    # The same with K and V one head at a time (less memory when heads > 2; see mcf_attention_block_heads_s8).
    "attention_block_heads": ("x", "$norm.gamma", "$norm.beta", *_linear_roles("qkv_v", True),
                              *_linear_roles("q"), *_linear_roles("k"), *_linear_roles("v"), "$attn.exp_table",
                              *_linear_roles("proj_v", True), *_linear_roles("proj_u")),
    "mlp_block": ("x", "$norm.gamma", "$norm.beta", *_linear_roles("fc1_v", True), *_linear_roles("fc1_u"),
                  "$gelu.table", *_linear_roles("fc2_v", True), *_linear_roles("fc2_u")),
}  # fmt: skip


# Scalar attributes per op kind: exactly the fields of the kernel's params struct (checked by `verify`).
OP_ATTRS: dict[str, tuple[str, ...]] = {
    "patch_embed": ("patch", "in_zp", "out_zp"),
    "patch_embed_rows": ("patch", "in_zp", "out_zp"),
    "patch_embed_stream": ("patch", "in_zp", "out_zp", "rows"),
    "linear": ("in_zp", "out_zp"),
    "add": ("a_zp", "b_zp", "a_mult", "b_mult", "shift", "out_zp"),
    "lut": (),
    "layernorm": ("in_zp", "eps", "mult", "shift", "out_zp"),
    "attention": ("heads", "q_zp", "k_zp", "v_zp", "score_mult", "score_shift", "score_zp",
                  "out_mult", "out_shift", "out_zp"),
    "mean_pool": ("in_zp", "mult", "shift", "out_zp"),
    "copy": (),
    "attention_block": ("heads", *_NORM_ATTRS, *_linear_attrs("qkv_v", "q", "k", "v"),
                        *(f"attn.{a}" for a in ("q_zp", "k_zp", "v_zp", "score_mult", "score_shift", "score_zp",
                                                "out_mult", "out_shift", "out_zp")),
                        *_linear_attrs("proj_v", "proj_u"), *_RES_ATTRS),
    "mlp_block": (*_NORM_ATTRS, *_linear_attrs("fc1_v", "fc1_u", "fc2_v", "fc2_u"), *_RES_ATTRS),
}  # fmt: skip
OP_ATTRS["attention_block_heads"] = OP_ATTRS["attention_block"]


@dataclass(frozen=True, eq=False)
class Op:
    name: str
    kind: str
    inputs: tuple[str, ...]
    output: str
    attrs: dict[str, int] = field(default_factory=dict)  # zero points, multipliers, shifts, heads, patch
    scratch: tuple[str, ...] = ()  # op-local buffers (kernel scratch sized by _get_buffer_size; K and V)


@dataclass
class Graph:
    name: str
    tensors: dict[str, TensorSpec] = field(default_factory=dict)
    consts: dict[str, Const] = field(default_factory=dict)
    ops: list[Op] = field(default_factory=list)
    input: str = ""
    output: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def add_tensor(self, spec: TensorSpec) -> str:
        if spec.name in self.tensors or spec.name in self.consts:
            raise IRError(f"duplicate name {spec.name!r}")
        self.tensors[spec.name] = spec
        return spec.name

    def add_const(self, name: str, array: np.ndarray) -> str:
        if name in self.tensors or name in self.consts:
            raise IRError(f"duplicate name {name!r}")
        self.consts[name] = Const(name, np.ascontiguousarray(array))
        return name

    def add_op(self, op: Op) -> Op:
        self.ops.append(op)
        return op

    def root(self, name: str) -> str:
        while (alias := self.tensors[name].alias_of) is not None:
            name = alias
        return name

    def root_offset(self, name: str) -> int:
        offset = 0
        while (spec := self.tensors[name]).alias_of is not None:
            offset += spec.offset
            name = spec.alias_of
        return offset

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name].shape if name in self.tensors else tuple(self.consts[name].array.shape)


_DTYPES = {"weight": np.int8, "bias": np.int32, "mult": np.int32, "shift": np.int32, "table": np.int8,
           "gamma": np.int32, "beta": np.int32, "exp_table": np.int32}  # fmt: skip


def role_dtype(role: str) -> Any:
    """The dtype a const operand must have: by the role's last part ('$q.weight' -> int8)."""
    return _DTYPES.get(role.lstrip("?$").rsplit(".", 1)[-1])


def verify(graph: Graph) -> None:
    """Structural checks run after every pass: names resolve, operands exist before use, shapes agree."""

    def fail(msg: str) -> None:
        raise IRError(f"graph {graph.name!r}: {msg}")

    for spec in graph.tensors.values():
        if spec.alias_of is not None:
            if spec.alias_of not in graph.tensors:
                fail(f"tensor {spec.name} views unknown tensor {spec.alias_of}")
            root = graph.tensors[spec.alias_of]
            if spec.offset < 0 or spec.offset + spec.nbytes > root.nbytes:
                fail(f"view {spec.name} [{spec.offset}, +{spec.nbytes}) lies outside {root.name} ({root.nbytes} B)")
    if graph.input not in graph.tensors or graph.output not in graph.tensors:
        fail("graph input/output are not tensors")
    written = {graph.input}
    produced_by: dict[str, str] = {}
    for op in graph.ops:
        roles = OP_SIGNATURES.get(op.kind)
        if roles is None:
            fail(f"op {op.name} has unknown kind {op.kind!r}")
            return
        if tuple(op.attrs) != OP_ATTRS[op.kind]:
            fail(f"op {op.name} ({op.kind}) needs attributes {OP_ATTRS[op.kind]}, got {tuple(op.attrs)}")
        if len(op.inputs) != len(roles):
            fail(f"op {op.name} ({op.kind}) takes {len(roles)} operands, got {len(op.inputs)}")
        for role, name in zip(roles, op.inputs, strict=True):
            if name == "" and role.startswith("?"):
                continue
            role = role.lstrip("?")
            if name in graph.consts:
                want = role_dtype(role)
                if want is not None and graph.consts[name].array.dtype != want:
                    fail(f"op {op.name}: const {name} for {role} must be {np.dtype(want).name}")
                continue
            if role.startswith("$"):
                fail(f"op {op.name}: operand {role[1:]} must be a const, got {name!r}")
            if name not in graph.tensors:
                fail(f"op {op.name} reads unknown tensor {name!r}")
            if not _is_written(graph, name, written):
                fail(f"op {op.name} reads {name} before it is written")
        if op.output not in graph.tensors:
            fail(f"op {op.name} writes unknown tensor {op.output!r}")
        if op.output in produced_by:
            fail(f"tensor {op.output} is written by both {produced_by[op.output]} and {op.name}")
        produced_by[op.output] = op.name
        for scratch in op.scratch:
            if scratch not in graph.tensors or not graph.tensors[scratch].scratch:
                fail(f"op {op.name}: {scratch} is not a scratch tensor")
        _check_shapes(graph, op, fail)
        written.add(op.output)
    if not _is_written(graph, graph.output, written):
        fail(f"graph output {graph.output} is never written")


def _is_written(graph: Graph, name: str, written: set[str]) -> bool:
    """Written directly, a view of a written tensor, or a root whose views cover it (class row + patch rows)."""
    if name in written:
        return True
    parent = graph.tensors[name].alias_of
    if parent is not None and parent in written:
        return True
    views = [t for t in graph.tensors.values() if t.alias_of == name]
    covered = sum(v.nbytes for v in views if _is_written(graph, v.name, written))
    return bool(views) and covered >= graph.tensors[name].nbytes


def _check_shapes(graph: Graph, op: Op, fail: Any) -> None:
    shape = graph.shape
    out = shape(op.output)
    if op.kind == "linear":
        x, w = shape(op.inputs[0]), shape(op.inputs[1])
        if x[-1] != w[1] or out != (*x[:-1], w[0]):
            fail(f"op {op.name}: linear {x} x {w} cannot give {out}")
        for role in (2, 3, 4):
            if shape(op.inputs[role]) != (w[0],):
                fail(f"op {op.name}: per-channel operand {op.inputs[role]} must have {w[0]} entries")
    elif op.kind in ("patch_embed", "patch_embed_rows"):
        (h, w_, c), p = shape(op.inputs[0]), op.attrs["patch"]
        weight = shape(op.inputs[1])
        if h % p or w_ % p or weight[1] != p * p * c or out != ((h // p) * (w_ // p), weight[0]):
            fail(f"op {op.name}: patch embedding of {h}x{w_}x{c} with {weight} cannot give {out}")
    elif op.kind == "patch_embed_stream":
        (h, w_, c), p, rows = shape(op.inputs[0]), op.attrs["patch"], op.attrs["rows"]
        weight = shape(op.inputs[1])
        if h != p or w_ % p or weight[1] != p * p * c or out != (rows * (w_ // p), weight[0]):
            fail(f"op {op.name}: {rows} strips of {h}x{w_}x{c} with {weight} cannot give {out}")
    elif op.kind in ("attention_block", "attention_block_heads", "mlp_block"):
        if len(shape(op.inputs[0])) != 2 or out != shape(op.inputs[0]):
            fail(f"op {op.name}: a fused block maps a [tokens, channels] residual stream to one of the same shape")
        source, target = graph.tensors[op.inputs[0]], graph.tensors[op.output]
        if graph.root(op.output) == graph.root(op.inputs[0]) and source.offset != target.offset:
            fail(f"op {op.name}: a fused block runs in place or on a separate output, never partly overlapping")
    elif op.kind in ("add", "lut", "layernorm", "copy"):
        if graph.tensors[op.output].nbytes != int(np.prod(shape(op.inputs[0]))):
            fail(f"op {op.name}: {op.kind} output size differs from its input")
        if op.kind == "add" and int(np.prod(shape(op.inputs[1]))) != int(np.prod(shape(op.inputs[0]))):
            fail(f"op {op.name}: add operands differ in size")
    elif op.kind == "attention":
        q, k, v = (shape(n) for n in op.inputs[:3])
        if not q == k == v == out or q[-1] % op.attrs["heads"]:
            fail(f"op {op.name}: attention shapes {q} {k} {v} -> {out} (heads {op.attrs['heads']})")
    elif op.kind == "mean_pool" and out != (shape(op.inputs[0])[-1],):
        fail(f"op {op.name}: mean pool of {shape(op.inputs[0])} cannot give {out}")
