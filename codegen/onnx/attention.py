"""Attention matched backward from its projection: softmax(q k^T * scale) v, whatever the head plumbing.

Head layouts are learned by running the Reshape/Transpose/Split/Slice/Gather ops between the linears and the
attention products on index arrays; q, k, v may come from one fused linear (low-rank or not) or three.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuformer.codegen.onnx.errors import MatchError
from mcuformer.codegen.onnx.graph import LAYOUT_OPS, OnnxGraph
from mcuformer.codegen.onnx.layers import Linear, linear_back, low_rank_factor, scalar

SCALE_OPS = frozenset({"Mul", "Div"})
SCALE_TOLERANCE = 1e-6  # attention scales equal up to float32 rounding count as equal


def _trace_back(g: OnnxGraph, name: str) -> tuple[str, list[object], float]:
    """Walk back through layout ops and scalar Mul/Div: (source tensor, nodes in forward order, scale)."""
    path: list[object] = []
    scale = 1.0
    while True:
        node = g.make(name)
        if node is None:
            break
        if node.op_type in LAYOUT_OPS and len(g.dynamic_inputs(node)) == 1:
            path.append(node)
            name = g.dynamic_inputs(node)[0]
            continue
        if node.op_type in SCALE_OPS and len(g.dynamic_inputs(node)) == 1:
            const = scalar(g.const(node.input[1])) if node.input[0] in g.dynamic else None
            if node.op_type == "Mul" and const is None and node.input[1] in g.dynamic:
                const = scalar(g.const(node.input[0]))
            if const is not None:
                scale = scale * const if node.op_type == "Mul" else scale / const
                path.append(node)
                name = g.dynamic_inputs(node)[0]
                continue
        break
    return name, path[::-1], scale


def probe(g: OnnxGraph, start: str, path: list[object], end: str) -> np.ndarray:
    """Run the layout path on an index array: which element of `start` lands at each element of `end`."""
    index = np.arange(int(np.prod(g.shape(start))), dtype=np.int64).reshape(g.shape(start))
    return g.run_path(start, index, path, passthrough=SCALE_OPS)[end]


def squeeze_lead(a: np.ndarray, ndim: int) -> np.ndarray:
    while a.ndim > ndim and a.shape[0] == 1:
        a = a[0]
    return a


def _head_channels(g: OnnxGraph, node: object, source: str, index: np.ndarray, transposed: bool) -> np.ndarray:
    """[heads, head_dim] channels of `source` ([.., tokens, F]) feeding one attention operand."""
    width = g.shape(source)[-1]
    a = squeeze_lead(index, 3)
    if a.ndim != 3:
        raise MatchError(node, "attention operands must be [heads, tokens, head_dim]")
    if transposed:
        a = a.transpose(0, 2, 1)
    token, channel = a // width, a % width
    tokens = a.shape[1]
    if not (token == np.arange(tokens)[None, :, None]).all() or not (channel == channel[:, :1, :]).all():
        raise MatchError(node, "attention must keep token order and give every head fixed channels")
    return np.asarray(channel[:, 0, :])


@dataclass(frozen=True, eq=False)
class _Attention:
    qkv: Linear
    heads: int
    proj: Linear
    taps: dict[str, list[str]]


def attention_back(g: OnnxGraph, branch: str) -> _Attention:
    proj = linear_back(g, branch)
    ctx, ctx_path = g.skip_layout_back(proj.input)
    mm2 = g.make(ctx)
    if mm2 is None or mm2.op_type != "MatMul" or len(g.dynamic_inputs(mm2)) != 2:
        raise MatchError(mm2 or proj.node, "expected attention (softmax(q k^T) @ v) before the projection")
    probs, _ = g.skip_layout_back(mm2.input[0])
    softmax = g.make(probs)
    if softmax is None or softmax.op_type != "Softmax":
        raise MatchError(softmax or mm2, "attention weights must come from a Softmax")
    if g.attr(softmax, "axis", -1) not in (-1, len(g.shape(probs)) - 1):
        raise MatchError(softmax, "Softmax must run over the last axis (keys)")
    scores, _, score_scale = _trace_back(g, softmax.input[0])
    mm1 = g.make(scores)
    if mm1 is None or mm1.op_type != "MatMul" or len(g.dynamic_inputs(mm1)) != 2:
        raise MatchError(mm1 or softmax, "expected attention scores q @ k^T before the Softmax")
    sources, channels, scales = [], [], []
    taps = {"scores": [softmax.input[0]], "context": [proj.input, ctx]}
    for part, operand, transposed in (
        ("q", mm1.input[0], False),
        ("k", mm1.input[1], True),
        ("v", mm2.input[1], False),
    ):
        source, path, scale = _trace_back(g, operand)
        taps[part] = [source] + [out for node in path for out in node.output]  # type: ignore[attr-defined]
        sources.append(source)
        channels.append(_head_channels(g, mm1, source, probe(g, source, path, operand), transposed))
        scales.append(scale)
    heads, head_dim = channels[0].shape
    dim = heads * head_dim
    # Context: which (head, head channel) of the attention output feeds each input channel of the projection.
    ctx_index = squeeze_lead(probe(g, ctx, ctx_path, proj.input), 2)
    head, token, j = np.unravel_index(ctx_index, squeeze_lead(g.values[ctx], 3).shape)
    if ctx_index.shape[-1] != dim or not (token == np.arange(token.shape[0])[:, None]).all():
        raise MatchError(mm2, "the attention output must be re-assembled as [tokens, heads * head_dim]")
    ours = (head * head_dim + j)[0]  # mcuformer's context channel of each ONNX projection input channel
    proj = _permute_inputs(proj, ours)
    if len(set(sources)) == 1:
        fused = linear_back(g, sources[0])
        rows = [fused.weight[c.reshape(-1)] for c in channels]
        biases = [fused.bias[c.reshape(-1)] for c in channels]
        v_factor, x, middle = fused.v, fused.input, fused.middle
    else:
        parts = [linear_back(g, s) for s in sources]
        if any(p.v is not None for p in parts) or len({p.input for p in parts}) != 1:
            raise MatchError(mm1, "separate q, k, v linears must be full rank (or share one low-rank factor) and "
                                  "read the same tensor")  # fmt: skip
        rows = [p.weight[c.reshape(-1)] for p, c in zip(parts, channels, strict=True)]
        biases = [p.bias[c.reshape(-1)] for p, c in zip(parts, channels, strict=True)]
        # q, k and v may share one low-rank factor V (mcuformer's low-rank qkv written as three linears).
        v_factor, x, middle_bias = low_rank_factor(g, parts[0].input, 3 * dim, readers=3)
        middle = parts[0].input if v_factor is not None else None
        if middle_bias is not None:
            biases = [b + r @ middle_bias for b, r in zip(biases, rows, strict=True)]
    # mcuformer scales scores by head_dim^-0.5; any other total scale is folded into q (and v's into v).
    ratio = score_scale * scales[0] * scales[1] / head_dim**-0.5
    ratio = 1.0 if abs(ratio - 1.0) < SCALE_TOLERANCE else ratio
    v_ratio = 1.0 if abs(scales[2] - 1.0) < SCALE_TOLERANCE else scales[2]
    rows[0], biases[0] = rows[0] * ratio, biases[0] * ratio
    rows[2], biases[2] = rows[2] * v_ratio, biases[2] * v_ratio
    qkv = Linear(np.concatenate(rows), np.concatenate(biases), v_factor, x, mm1, "", middle)
    return _Attention(qkv, int(heads), proj, taps)


def _permute_inputs(linear: Linear, ours: np.ndarray) -> Linear:
    """Reorder input columns: ONNX input channel c becomes mcuformer channel ours[c]."""
    if linear.v is not None:
        v = np.empty_like(linear.v)
        v[:, ours] = linear.v
        return Linear(linear.weight, linear.bias, v, linear.input, linear.node, linear.output, linear.middle)
    w = np.empty_like(linear.weight)
    w[:, ours] = linear.weight
    return Linear(w, linear.bias, None, linear.input, linear.node, linear.output, linear.middle)
