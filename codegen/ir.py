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
