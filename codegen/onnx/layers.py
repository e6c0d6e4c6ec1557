"""Layer patterns over an OnnxGraph, matched backward from a layer's output: linear, LayerNorm, GELU.

Each accepts the forms PyTorch exporters emit (MatMul or Gemm with bias Add, LayerScale Mul and low-rank factor;
LayerNormalization or its decomposed form; Gelu or its erf / tanh forms) and raises MatchError naming the node
where it fails. Element-wise forms (GELU, decomposed LayerNorm) are identified by evaluating them, not by listing
their node orders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcuformer.codegen.onnx.errors import MatchError
from mcuformer.codegen.onnx.graph import OnnxGraph
from mcuformer.quant import spec

ELEMENTWISE_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "Erf", "Tanh", "Neg", "Sigmoid"})
NORM_OPS = ELEMENTWISE_OPS | {"ReduceMean"}
REGION_SEARCH_LIMIT = 24  # nodes visited looking for the start of a decomposed GELU or LayerNorm
GELU_TOLERANCE = 5e-5  # erf and tanh GELU differ by up to 4.7e-4: this tells them apart in float32
NORM_TOLERANCE = 1e-4


@dataclass(frozen=True, eq=False)
class Norm:
    weight: np.ndarray
    bias: np.ndarray
    eps: float
    input: str
    output: str


@dataclass(frozen=True, eq=False)
class Linear:
    """y = u (v x) + bias in mcuformer's [out, in] convention; v is None for a full-rank linear."""

    weight: np.ndarray
    bias: np.ndarray
    v: np.ndarray | None
    input: str
    node: object
    output: str = ""  # tensors where the int8 model quantizes: the output and the low-rank middle
    middle: str | None = None


def f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def float32_value(value: float) -> float:
    """The shortest decimal that a float32 constant reads back as: an exporter's 1e-6 is stored as 9.99999997e-07."""
    return float(str(np.float32(value)))


def scalar(value: np.ndarray | None) -> float | None:
    return None if value is None or np.size(value) != 1 else float(np.asarray(value).reshape(-1)[0])


# Linear layers -----------------------------------------------------------------------------------------------
def linear_back(g: OnnxGraph, name: str) -> Linear:
    """The linear layer (MatMul/Gemm, bias Add, LayerScale Mul, low-rank factor) whose output is `name`."""
    output = name
    node = g.make(name)
    if node is None:
        raise MatchError(None, f"expected a linear layer before tensor {name!r}")
    gamma = None
    if node.op_type == "Mul" and len(g.dynamic_inputs(node)) == 1:  # timm LayerScale: folded into the weights
        name, gamma = g.split_const(node)
        node = g.make(name)
    bias = None
    if node is not None and node.op_type == "Add" and len(g.dynamic_inputs(node)) == 1:
        name, bias = g.split_const(node)
        node = g.make(name)
    if node is None or node.op_type not in ("MatMul", "Gemm") or len(g.dynamic_inputs(node)) != 1:
        raise MatchError(node, "expected a linear layer (MatMul or Gemm with constant weights)")
    x = node.input[0]
    if x not in g.dynamic:
        raise MatchError(node, "the image-dependent input must come first")
    if node.op_type == "Gemm":
        if g.attr(node, "transA", 0):
            raise MatchError(node, "Gemm with transA is not a linear layer on tokens")
        b = f64(g.values[node.input[1]])
        weight = (b if g.attr(node, "transB", 0) else b.T) * g.attr(node, "alpha", 1.0)
        if len(node.input) > 2 and node.input[2]:
            gemm_bias = f64(g.values[node.input[2]]) * g.attr(node, "beta", 1.0)
            bias = gemm_bias if bias is None else gemm_bias + f64(bias)
    else:
        b = g.const(node.input[1])
        if b is None or b.ndim != 2:
            raise MatchError(node, "MatMul weights must be a constant matrix")
        weight = f64(b).T
    out = weight.shape[0]
    bias_vec = np.zeros(out)
    if bias is not None:
        if f64(bias).size not in (1, out):
            raise MatchError(node, f"bias of size {f64(bias).size} does not match {out} outputs")
        bias_vec = np.broadcast_to(f64(bias).reshape(-1), (out,)).copy()
    middle = x
    v, x, middle_bias = low_rank_factor(g, x, out, readers=1)
    if v is not None and middle_bias is not None:  # a bias on the low-rank middle folds into the output bias
        bias_vec = bias_vec + weight @ middle_bias
    if gamma is not None:
        g_vec = np.broadcast_to(f64(gamma).reshape(-1), (out,))
        weight, bias_vec = weight * g_vec[:, None], bias_vec * g_vec
    return Linear(weight, bias_vec, v, x, node, output, middle if v is not None else None)


def low_rank_factor(g: OnnxGraph, x: str, out: int, readers: int) -> tuple[np.ndarray | None, str, np.ndarray | None]:
    """(V [rank, in], V's input, V's bias or None) when `x` is a rank-reducing MatMul (+ bias) read by `readers`
    linears; (None, x, None) otherwise."""
    inner, bias, mid = g.make(x), None, x
    if inner is not None and inner.op_type == "Add" and len(g.dynamic_inputs(inner)) == 1:
        if len(g.consumers[x]) != readers:
            return None, x, None
        mid, bias = g.split_const(inner)
        inner = g.make(mid)
        readers = 1
    if inner is None or inner.op_type != "MatMul" or len(g.consumers[mid]) != readers:
        return None, x, None
    factor = g.const(inner.input[1])
    if factor is None or factor.ndim != 2 or not factor.shape[1] < min(factor.shape[0], out):
        return None, x, None
    rank = factor.shape[1]
    middle_bias = None if bias is None else np.broadcast_to(f64(bias).reshape(-1), (rank,)).copy()
    return f64(factor).T, inner.input[0], middle_bias


# LayerNorm ----------------------------------------------------------------------------------------------------
def _layernorm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _back_closure(g: OnnxGraph, name: str, ops: frozenset[str]) -> list[str]:
    """Image-dependent tensors reached walking back from `name` through `ops`, nearest first."""
    order: list[str] = []
    frontier, seen = [name], {name}
    while frontier and len(order) < REGION_SEARCH_LIMIT:
        node = g.make(frontier.pop(0))
        if node is None or node.op_type not in ops:
            continue
        for inp in g.dynamic_inputs(node):
            if inp not in seen:
                seen.add(inp)
                order.append(inp)
                frontier.append(inp)
    return order


def norm_back(g: OnnxGraph, name: str) -> Norm:
    """The LayerNorm (a LayerNormalization node or its decomposed form) whose output is `name`."""
    node = g.make(name)
    if node is None:
        raise MatchError(None, f"expected a LayerNorm before tensor {name!r}")
    if node.op_type == "LayerNormalization":
        rank = len(g.shape(node.input[0]))
        if g.attr(node, "axis", -1) not in (-1, rank - 1):
            raise MatchError(node, "LayerNormalization must normalise the last axis (channels)")
        width = g.shape(node.input[0])[-1]
        weight = f64(g.values[node.input[1]]).reshape(-1)
        bias = f64(g.values[node.input[2]]).reshape(-1) if len(node.input) > 2 and node.input[2] else np.zeros(width)
        return Norm(np.broadcast_to(weight, (width,)).copy(), np.broadcast_to(bias, (width,)).copy(),
                    float32_value(g.attr(node, "epsilon", 1e-5)), node.input[0], name)  # fmt: skip
    if node.op_type not in NORM_OPS:
        raise MatchError(node, "expected a LayerNorm (LayerNormalization or its decomposed form)")
    for start in _back_closure(g, name, NORM_OPS):
        region = g.region(start, name)
        if sum(n.op_type == "ReduceMean" for n in region) == 2 and g.is_closed(start, region):
            return _decomposed_norm(g, start, name, region, node)
    raise MatchError(node, "this element-wise subgraph is not a decomposed LayerNorm over the channel axis")


def _decomposed_norm(g: OnnxGraph, start: str, end: str, region: list[object], node: object) -> Norm:
    shape = g.shape(start)
    width = shape[-1]
    eps_values = [scalar(g.const(n)) for r in region if r.op_type == "Add" for n in r.input]  # type: ignore[attr-defined]
    eps_candidates = [e for e in eps_values if e is not None and 0 < e < 1e-2]
    if len(eps_candidates) != 1:
        raise MatchError(node, "decomposed LayerNorm needs exactly one small epsilon constant")
    eps = float32_value(eps_candidates[0])

    def run(x: np.ndarray) -> np.ndarray:
        return f64(g.run_path(start, x.astype(np.float32), region)[end])

    row = np.where(np.arange(width) % 2 == 0, 1.0, -1.0)
    probe = np.broadcast_to(row, shape)
    plus, minus = run(probe), run(-probe)
    normalised = _layernorm(row, np.ones(width), np.zeros(width), eps)
    weight = ((plus - minus) / (2 * normalised)).reshape(-1, width)[0]
    bias = ((plus + minus) / 2).reshape(-1, width)[0]
    sample = f64(g.values[start])
    expected = _layernorm(sample, weight, bias, eps)
    got = run(sample)
    if not np.allclose(got, expected, atol=NORM_TOLERANCE * max(1.0, float(np.abs(expected).max()))):
        raise MatchError(node, "this element-wise subgraph is not a decomposed LayerNorm over the channel axis")
    return Norm(weight, bias, eps, start, end)


# GELU ---------------------------------------------------------------------------------------------------------
def gelu_back(g: OnnxGraph, name: str) -> tuple[str, str]:
    """(form "erf" | "tanh", input tensor) of the GELU whose output is `name`."""
    node = g.make(name)
    if node is not None and node.op_type == "Gelu":
        approximate = g.attr(node, "approximate", b"none")
        approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
        return ("tanh" if approximate == "tanh" else "erf"), node.input[0]
    if node is None or node.op_type not in ELEMENTWISE_OPS:
        raise MatchError(node, "expected GELU (a Gelu node, or its erf or tanh form) between fc1 and fc2")
    for start in _back_closure(g, name, ELEMENTWISE_OPS):
        region = g.region(start, name)
        if not g.is_closed(start, region):
            continue
        grid = np.broadcast_to(np.linspace(-8.0, 8.0, int(np.prod(g.shape(start)))).reshape(g.shape(start)),
                               g.shape(start))  # fmt: skip
        got = f64(g.run_path(start, grid.astype(np.float32), region)[name])
        exact = f64(grid).astype(np.float32).astype(np.float64)
        for form, fn in (("erf", spec.gelu), ("tanh", spec.gelu_tanh)):
            if np.allclose(got, fn(exact), atol=GELU_TOLERANCE):
                return form, start
    raise MatchError(node, "the element-wise function between fc1 and fc2 is not GELU (erf or tanh form)")
