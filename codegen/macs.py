"""Multiply-accumulates per op of a graph: what `mcuformer profile` divides instruction and cycle counts by.

A MAC is one int8 x int8 product accumulated: for a linear layer tokens x in x out, for a patch embedding tokens x
(patch^2 x channels) x out, for attention 2 x N x N x d (scores and context). Element-wise ops (LayerNorm, softmax
inside attention, GELU table, residual adds, copies) count 0 MACs: their time shows as instructions on no MACs.
"""

from __future__ import annotations

import math

from mcuformer.codegen.ir import OP_SIGNATURES, Graph, Op

_WEIGHTED = ("linear", "patch_embed", "patch_embed_rows", "patch_embed_stream", "attention_block",
             "attention_block_heads", "mlp_block")  # fmt: skip
_ATTENTION = ("attention", "attention_block", "attention_block_heads")


def _weights(graph: Graph, op: Op) -> list[int]:
    """Element counts of the op's weight consts (absent optional factors are given as "")."""
    sizes = []
    for role, name in zip(OP_SIGNATURES[op.kind], op.inputs, strict=False):
        if name and role.lstrip("?$").split(".")[-1] == "weight":
            sizes.append(int(graph.consts[name].array.size))
    return sizes


def op_macs(graph: Graph, op: Op) -> int:
    """MACs of one op (0 for ops without multiply-accumulates)."""
    if op.kind not in _WEIGHTED and op.kind not in _ATTENTION:
        return 0
    first = graph.shape(op.inputs[0])
    rows = math.prod(graph.shape(op.output)[:-1]) if op.kind.startswith("patch_embed") else math.prod(first[:-1])
    macs = rows * sum(_weights(graph, op))
    if op.kind in _ATTENTION:
        tokens, channels = math.prod(first[:-1]), first[-1]
        macs += 2 * tokens * tokens * channels
    return macs


def graph_macs(graph: Graph) -> list[int]:
    """MACs of every op, in op order."""
    return [op_macs(graph, op) for op in graph.ops]
