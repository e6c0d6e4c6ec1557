"""Structural checks of a graph, run after every pass: names resolve, operands exist before use and have the
roles, attributes and dtypes the op table gives their kind, shapes agree."""

from __future__ import annotations

from typing import Any

import numpy as np

from mcuformer.codegen.ir import Graph, IRError
from mcuformer.codegen.ops import OPS

_DTYPES = {"weight": np.int8, "bias": np.int32, "mult": np.int32, "shift": np.int8, "table": np.int8,
           "gamma": np.int16, "beta": np.int32, "exp_table": np.int32}  # fmt: skip


def role_dtype(role: str) -> Any:
    """The dtype a const operand must have: by the role's last part ('$q.weight' -> int8)."""
    return _DTYPES.get(role.lstrip("?$").rsplit(".", 1)[-1])


def role_dtypes(role: str) -> tuple[Any, ...]:
    """The dtypes a const operand may have: role_dtype's, and int16 for the weights of a fused op's linears
    (mcf_linear_layer.weight16: widened by codegen.layout)."""
    want = role_dtype(role)
    if want is None:
        return ()
    fused_weight = "." in role and role.endswith(".weight")
    return (np.dtype(want), np.dtype(np.int16)) if fused_weight else (np.dtype(want),)


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
        kind = OPS.get(op.kind)
        if kind is None:
            fail(f"op {op.name} has unknown kind {op.kind!r}")
            return
        roles = kind.roles
        if tuple(op.attrs) != kind.attrs:
            fail(f"op {op.name} ({op.kind}) needs attributes {kind.attrs}, got {tuple(op.attrs)}")
        if len(op.inputs) != len(roles):
            fail(f"op {op.name} ({op.kind}) takes {len(roles)} operands, got {len(op.inputs)}")
        for role, name in zip(roles, op.inputs, strict=True):
            if name == "" and role.startswith("?"):
                continue
            role = role.lstrip("?")
            if name in graph.consts:
                allowed = role_dtypes(role)
                if allowed and graph.consts[name].array.dtype not in allowed:
                    fail(f"op {op.name}: const {name} for {role} must be {' or '.join(d.name for d in allowed)}")
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
        if kind.shapes is not None and (problem := kind.shapes(graph, op)):
            fail(f"op {op.name}: {problem}")
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
