"""ViT patterns over an OnnxGraph, matched backward from the logits, into weights in mcuformer's layout.

Each matcher accepts the forms PyTorch exporters emit (LayerNormalization or its decomposed form, Gelu or its
erf / tanh forms, MatMul or Gemm, any Reshape/Transpose/Split/Slice/Gather plumbing around attention) and
raises MatchError naming the node where the model leaves the supported structure. Element-wise forms (GELU,
decomposed LayerNorm) are identified by evaluating them, not by listing their node orders; head layouts are
learned by running the layout ops on index arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mcuformer.codegen.onnx.errors import MatchError
from mcuformer.codegen.onnx.graph import LAYOUT_OPS, OnnxGraph
from mcuformer.quant import spec

SCALE_OPS = frozenset({"Mul", "Div"})
ELEMENTWISE_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "Erf", "Tanh", "Neg", "Sigmoid"})
NORM_OPS = ELEMENTWISE_OPS | {"ReduceMean"}
REGION_SEARCH_LIMIT = 24  # nodes visited looking for the start of a decomposed GELU or LayerNorm
GELU_TOLERANCE = 5e-5  # erf and tanh GELU differ by up to 4.7e-4: this tells them apart in float32
NORM_TOLERANCE = 1e-4
SCALE_TOLERANCE = 1e-6  # attention scales equal up to float32 rounding count as equal


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


@dataclass(frozen=True, eq=False)
class BlockWeights:
    norm1: Norm
    qkv: Linear
    heads: int
    proj: Linear
    norm2: Norm
    fc1: Linear
    gelu: str
    fc2: Linear
    taps: dict[str, list[str]]  # calibration tap (model.py name, without "blocks.i.") -> ONNX tensors holding it


@dataclass(frozen=True, eq=False)
class VitWeights:
    image_size: int
    channels: int
    patch_size: int
    pixel_scale: np.ndarray  # the model computes pixel_scale * x + pixel_shift before the patch embedding
    pixel_shift: np.ndarray
    patch_weight: np.ndarray  # [D, C, P, P]
    patch_bias: np.ndarray
    cls_token: np.ndarray | None
    pos_embed: np.ndarray  # [tokens, D]
    blocks: tuple[BlockWeights, ...]
    pool: str
    norm: Norm
    head: Linear
    taps: dict[str, list[str]]


def _f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _float32_value(value: float) -> float:
    """The shortest decimal that a float32 constant reads back as: an exporter's 1e-6 is stored as 9.99999997e-07."""
    return float(str(np.float32(value)))


def _scalar(value: np.ndarray | None) -> float | None:
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
        b = _f64(g.values[node.input[1]])
        weight = (b if g.attr(node, "transB", 0) else b.T) * g.attr(node, "alpha", 1.0)
        if len(node.input) > 2 and node.input[2]:
            gemm_bias = _f64(g.values[node.input[2]]) * g.attr(node, "beta", 1.0)
            bias = gemm_bias if bias is None else gemm_bias + _f64(bias)
    else:
        b = g.const(node.input[1])
        if b is None or b.ndim != 2:
            raise MatchError(node, "MatMul weights must be a constant matrix")
        weight = _f64(b).T
    out = weight.shape[0]
    bias_vec = np.zeros(out)
    if bias is not None:
        if _f64(bias).size not in (1, out):
            raise MatchError(node, f"bias of size {_f64(bias).size} does not match {out} outputs")
        bias_vec = np.broadcast_to(_f64(bias).reshape(-1), (out,)).copy()
    middle = x
    v, x, middle_bias = _low_rank_factor(g, x, out, readers=1)
    if v is not None and middle_bias is not None:  # a bias on the low-rank middle folds into the output bias
        bias_vec = bias_vec + weight @ middle_bias
    if gamma is not None:
        g_vec = np.broadcast_to(_f64(gamma).reshape(-1), (out,))
        weight, bias_vec = weight * g_vec[:, None], bias_vec * g_vec
    return Linear(weight, bias_vec, v, x, node, output, middle if v is not None else None)


def _low_rank_factor(g: OnnxGraph, x: str, out: int, readers: int) -> tuple[np.ndarray | None, str, np.ndarray | None]:
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
    middle_bias = None if bias is None else np.broadcast_to(_f64(bias).reshape(-1), (rank,)).copy()
    return _f64(factor).T, inner.input[0], middle_bias


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
        weight = _f64(g.values[node.input[1]]).reshape(-1)
        bias = _f64(g.values[node.input[2]]).reshape(-1) if len(node.input) > 2 and node.input[2] else np.zeros(width)
        return Norm(np.broadcast_to(weight, (width,)).copy(), np.broadcast_to(bias, (width,)).copy(),
                    _float32_value(g.attr(node, "epsilon", 1e-5)), node.input[0], name)  # fmt: skip
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
    eps_values = [_scalar(g.const(n)) for r in region if r.op_type == "Add" for n in r.input]  # type: ignore[attr-defined]
    eps_candidates = [e for e in eps_values if e is not None and 0 < e < 1e-2]
    if len(eps_candidates) != 1:
        raise MatchError(node, "decomposed LayerNorm needs exactly one small epsilon constant")
    eps = _float32_value(eps_candidates[0])

    def run(x: np.ndarray) -> np.ndarray:
        return _f64(g.run_path(start, x.astype(np.float32), region)[end])

    row = np.where(np.arange(width) % 2 == 0, 1.0, -1.0)
    probe = np.broadcast_to(row, shape)
    plus, minus = run(probe), run(-probe)
    normalised = _layernorm(row, np.ones(width), np.zeros(width), eps)
    weight = ((plus - minus) / (2 * normalised)).reshape(-1, width)[0]
    bias = ((plus + minus) / 2).reshape(-1, width)[0]
    sample = _f64(g.values[start])
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
        got = _f64(g.run_path(start, grid.astype(np.float32), region)[name])
        exact = _f64(grid).astype(np.float32).astype(np.float64)
        for form, fn in (("erf", spec.gelu), ("tanh", spec.gelu_tanh)):
            if np.allclose(got, fn(exact), atol=GELU_TOLERANCE):
                return form, start
    raise MatchError(node, "the element-wise function between fc1 and fc2 is not GELU (erf or tanh form)")


# Attention ----------------------------------------------------------------------------------------------------
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
            const = _scalar(g.const(node.input[1])) if node.input[0] in g.dynamic else None
            if node.op_type == "Mul" and const is None and node.input[1] in g.dynamic:
                const = _scalar(g.const(node.input[0]))
            if const is not None:
                scale = scale * const if node.op_type == "Mul" else scale / const
                path.append(node)
                name = g.dynamic_inputs(node)[0]
                continue
        break
    return name, path[::-1], scale


def _probe(g: OnnxGraph, start: str, path: list[object], end: str) -> np.ndarray:
    """Run the layout path on an index array: which element of `start` lands at each element of `end`."""
    index = np.arange(int(np.prod(g.shape(start))), dtype=np.int64).reshape(g.shape(start))
    return g.run_path(start, index, path, passthrough=SCALE_OPS)[end]


def _squeeze_lead(a: np.ndarray, ndim: int) -> np.ndarray:
    while a.ndim > ndim and a.shape[0] == 1:
        a = a[0]
    return a


def _head_channels(g: OnnxGraph, node: object, source: str, index: np.ndarray, transposed: bool) -> np.ndarray:
    """[heads, head_dim] channels of `source` ([.., tokens, F]) feeding one attention operand."""
    width = g.shape(source)[-1]
    a = _squeeze_lead(index, 3)
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
        channels.append(_head_channels(g, mm1, source, _probe(g, source, path, operand), transposed))
        scales.append(scale)
    heads, head_dim = channels[0].shape
    dim = heads * head_dim
    # Context: which (head, head channel) of the attention output feeds each input channel of the projection.
    ctx_index = _squeeze_lead(_probe(g, ctx, ctx_path, proj.input), 2)
    head, token, j = np.unravel_index(ctx_index, _squeeze_lead(g.values[ctx], 3).shape)
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
        v_factor, x, middle_bias = _low_rank_factor(g, parts[0].input, 3 * dim, readers=3)
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


# Blocks -------------------------------------------------------------------------------------------------------
def _same_stream(g: OnnxGraph, a: str, b: str) -> bool:
    return g.skip_layout_back(a)[0] == g.skip_layout_back(b)[0]


def _residual(g: OnnxGraph, name: str) -> tuple[str, str]:
    node = g.make(name)
    if node is None or node.op_type != "Add" or len(g.dynamic_inputs(node)) != 2:
        raise MatchError(node, "expected a residual Add")
    return node.input[0], node.input[1]


def block_back(g: OnnxGraph, res2: str) -> tuple[str, BlockWeights]:
    """The pre-norm block whose output is `res2`: (its input stream, weights)."""
    errors = []
    a, b = _residual(g, res2)
    for res1, branch in ((a, b), (b, a)):
        try:
            fc2 = linear_back(g, branch)
            gelu, hidden = gelu_back(g, fc2.input)
            fc1 = linear_back(g, hidden)
            norm2 = norm_back(g, g.skip_layout_back(fc1.input)[0])
            if not _same_stream(g, norm2.input, res1):
                raise MatchError(g.make(branch), "the MLP's LayerNorm must read the residual stream")
            break
        except MatchError as err:
            errors.append(err)
    else:
        raise errors[0]
    errors = []
    a, b = _residual(g, res1)
    for x, branch in ((a, b), (b, a)):
        try:
            attn = attention_back(g, branch)
            norm1 = norm_back(g, g.skip_layout_back(attn.qkv.input)[0])
            if not _same_stream(g, norm1.input, x):
                raise MatchError(g.make(branch), "the attention's LayerNorm must read the residual stream")
            break
        except MatchError as err:
            errors.append(err)
    else:
        raise errors[0]
    taps = {f"attn.{k}": v for k, v in attn.taps.items()} | {
        "norm1": [norm1.output], "attn.qkv.mid": [attn.qkv.middle or ""], "attn.proj.mid": [attn.proj.middle or ""],
        "attn.proj": [attn.proj.output], "res1": [res1], "norm2": [norm2.output], "mlp.fc1.mid": [fc1.middle or ""],
        "mlp.fc1": [fc1.output], "mlp.act": [fc2.input], "mlp.fc2.mid": [fc2.middle or ""], "mlp.fc2": [fc2.output],
        "res2": [res2],
    }  # fmt: skip
    return x, BlockWeights(norm1, attn.qkv, attn.heads, attn.proj, norm2, fc1, gelu, fc2, taps)


# Embedding, pooling, head -------------------------------------------------------------------------------------
def _pixel_affine(g: OnnxGraph, name: str, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (scale, shift) of the Sub/Div/Mul/Add chain from the graph input to `name`."""
    chain = []
    while name != g.input:
        node = g.make(name)
        if node is None or node.op_type not in ("Sub", "Div", "Mul", "Add") or len(g.dynamic_inputs(node)) != 1:
            raise MatchError(node, "only a per-channel normalisation (Sub/Div/Mul/Add by constants) may come "
                                   "before the patch embedding")  # fmt: skip
        chain.append(node)
        name = g.dynamic_inputs(node)[0]
    a, b = np.ones(channels), np.zeros(channels)
    for node in reversed(chain):
        dyn, const = g.split_const(node)
        c = _f64(const)
        if c.size not in (1, channels) or (c.size == channels and c.reshape(-1).shape[0] != channels):
            raise MatchError(node, "normalisation constants must be per channel")
        if c.size == channels and c.ndim >= 3 and c.shape[-3] != channels:
            raise MatchError(node, "normalisation constants must be per channel")
        c = np.broadcast_to(c.reshape(-1), (channels,))
        first = node.input[0] == dyn
        if node.op_type == "Add":
            b = b + c
        elif node.op_type == "Sub":
            a, b = (a, b - c) if first else (-a, c - b)
        elif node.op_type == "Mul":
            a, b = a * c, b * c
        elif first:
            a, b = a / c, b / c
        else:
            raise MatchError(node, "dividing a constant by the image is not a normalisation")
    return a, b


def patch_back(g: OnnxGraph, tokens: str) -> tuple[str, np.ndarray, np.ndarray, int]:
    """The patch embedding producing `tokens` [1, patches, D]: (image tensor, conv weight, bias, patch size)."""
    channels, size = g.input_shape[1], g.input_shape[2]
    src, path = g.skip_layout_back(tokens)
    node = g.make(src)
    conv = node
    bias = None
    if node is not None and node.op_type == "Add" and len(g.dynamic_inputs(node)) == 1:
        conv_src, bias = g.split_const(node)
        conv = g.make(conv_src)
    if conv is not None and conv.op_type == "Conv":
        weight = _f64(g.values[conv.input[1]])
        patch = int(weight.shape[-1])
        pads = list(g.attr(conv, "pads", [0, 0, 0, 0]))
        ok = (list(g.attr(conv, "kernel_shape", weight.shape[2:])) == [patch, patch] and weight.shape[2] == patch
              and list(g.attr(conv, "strides", [1, 1])) == [patch, patch] and not any(pads)
              and g.attr(conv, "group", 1) == 1 and list(g.attr(conv, "dilations", [1, 1])) == [1, 1]
              and g.attr(conv, "auto_pad", b"NOTSET") in (b"NOTSET", b"VALID", "NOTSET", "VALID")
              and size % patch == 0)  # fmt: skip
        if not ok:
            raise MatchError(conv, "a convolution is only supported as the patch embedding (square kernel = stride, "
                                   "no padding, one group)")  # fmt: skip
        if len(conv.input) > 2 and conv.input[2]:
            conv_bias = _f64(g.values[conv.input[2]])
            bias = conv_bias if bias is None else conv_bias + _f64(bias).reshape(-1)
        dim, grid = weight.shape[0], size // patch
        index = _squeeze_lead(_probe(g, src, path, tokens), 2)
        expected = np.arange(dim)[None, :] * grid * grid + np.arange(grid * grid)[:, None]
        if index.shape != expected.shape or not (index == expected).all():
            raise MatchError(path[0] if path else conv, "patch tokens must be the conv output flattened row-major "
                                                        "and transposed to [patches, channels]")  # fmt: skip
        bias_vec = np.zeros(dim) if bias is None else np.broadcast_to(_f64(bias).reshape(-1), (dim,)).copy()
        return conv.input[0], weight, bias_vec, patch
    linear = linear_back(g, src)
    if linear.v is not None:
        raise MatchError(linear.node, "a low-rank patch embedding is not supported")
    if path:
        index = _squeeze_lead(_probe(g, src, path, tokens), 2)
        if not (index.reshape(-1) == np.arange(index.size)).all():
            raise MatchError(path[0], "patch tokens must keep the linear's [patches, channels] layout")
    image, image_path = g.skip_layout_back(linear.input)
    pixels = _squeeze_lead(_probe(g, image, image_path, linear.input), 2)  # [patches, patch_dim] pixel indices
    patches, patch_dim = pixels.shape
    grid = math.isqrt(patches)
    patch = size // grid if grid else 0
    if grid * grid != patches or patch * grid != size or patch_dim != channels * patch * patch:
        raise MatchError(linear.node, "patch MatMul input must be [patches, channels * patch * patch]")
    c, y, x = np.unravel_index(pixels, (channels, size, size))
    rows, cols = np.divmod(np.arange(patches), grid)
    if not ((y - y[:1] == (rows * patch)[:, None]).all() and (x - x[:1] == (cols * patch)[:, None]).all()
            and (c == c[:1]).all() and y[0].max() < patch and x[0].max() < patch):  # fmt: skip
        raise MatchError(linear.node, "patch MatMul must embed non-overlapping patches in row-major order")
    weight = np.zeros((linear.weight.shape[0], channels, patch, patch))
    weight[:, c[0], y[0], x[0]] = linear.weight
    return image, weight, linear.bias, patch


def embedding_back(g: OnnxGraph, stream: str) -> tuple[str, np.ndarray | None, np.ndarray]:
    """Token embedding before the first block: (patch tokens tensor, class token or None, position embedding)."""
    node = g.make(stream)
    if node is not None and node.op_type == "Add" and len(g.dynamic_inputs(node)) == 1:
        tokens, pos = g.split_const(node)
        pos = _f64(pos).reshape(-1, _f64(pos).shape[-1])
        inner = g.make(g.skip_layout_back(tokens)[0])
        if inner is not None and inner.op_type == "Concat":
            cls, patches = _cls_concat(g, inner)
            return patches, cls, pos
        return tokens, None, pos
    if node is not None and node.op_type == "Concat":
        cls, patches = _cls_concat(g, node)
        add = g.make(patches)
        if add is None or add.op_type != "Add" or len(g.dynamic_inputs(add)) != 1:
            raise MatchError(add or node, "expected patch tokens + position embedding after the class token")
        tokens, pos = g.split_const(add)
        pos = _f64(pos).reshape(-1, _f64(pos).shape[-1])
        return tokens, cls, np.concatenate([np.zeros((1, pos.shape[1])), pos])
    raise MatchError(node, "expected the token embedding (patch embedding + position embedding, optional class "
                           "token concatenated first)")  # fmt: skip


def _cls_concat(g: OnnxGraph, node: object) -> tuple[np.ndarray, str]:
    inputs = list(node.input)  # type: ignore[attr-defined]
    axis = g.attr(node, "axis", 0)
    rank = len(g.shape(inputs[0]))
    if len(inputs) != 2 or axis not in (1, 1 - rank) or inputs[0] in g.dynamic or inputs[1] not in g.dynamic:
        raise MatchError(node, "only one class token, concatenated before the patch tokens, is supported")
    cls = _f64(g.values[inputs[0]])
    if cls.shape[-2] != 1:
        raise MatchError(node, f"{cls.shape[-2]} extra tokens (register tokens?): only one class token is supported")
    return cls.reshape(-1), inputs[1]


def _mean_axis_ok(g: OnnxGraph, node: object) -> bool:
    axes = g.attr(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1]:  # type: ignore[attr-defined]
        axes = g.values[node.input[1]].tolist()  # type: ignore[attr-defined]
    rank = len(g.shape(node.input[0]))  # type: ignore[attr-defined]
    return axes is not None and [a % rank for a in axes] == [rank - 2]


def head_back(g: OnnxGraph) -> tuple[str, str, Norm, Linear]:
    """(stream after the last block, pool, final norm, head) read back from the logits."""
    head = linear_back(g, g.output)
    if head.v is not None:
        raise MatchError(head.node, "a low-rank classifier head is not supported")
    src, path = g.skip_layout_back(head.input)
    node = g.make(src)
    if node is not None and node.op_type == "ReduceMean":
        raise MatchError(node, "mean pooling after the final LayerNorm does not map (mcuformer pools, then "
                               "normalises, as timm's fc_norm): export with the norm after pooling")  # fmt: skip
    norm = norm_back(g, src)
    width = head.weight.shape[1]
    if int(np.prod(g.shape(src))) != width:  # the norm ran on every token: a token is selected after it
        selected = _squeeze_lead(_probe(g, src, path, head.input), 1)
        if not (selected.reshape(-1) == np.arange(width)).all():
            raise MatchError(path[0] if path else head.node, "the pooled token must be token 0 (the class token)")
        return norm.input, "cls", norm, head
    pooled, pooled_path = g.skip_layout_back(norm.input)
    pool_node = g.make(pooled)
    if pool_node is not None and pool_node.op_type == "ReduceMean":
        if not _mean_axis_ok(g, pool_node):
            raise MatchError(pool_node, "mean pooling must average over the token axis")
        if g.attr(pool_node, "noop_with_empty_axes", 0):
            raise MatchError(pool_node, "noop_with_empty_axes is not supported")
        stream, stream_path = g.skip_layout_back(pool_node.input[0])
        if stream_path:
            raise MatchError(stream_path[0], "mean pooling must average every token (no class token to skip)")
        return stream, "mean", norm, head
    if pooled_path:
        selected = _squeeze_lead(_probe(g, pooled, pooled_path, norm.input), 1)
        if (selected.reshape(-1) == np.arange(width)).all():
            return pooled, "cls", norm, head
        raise MatchError(pooled_path[0], "the pooled token must be token 0 (the class token)")
    raise MatchError(pool_node, "expected class-token selection or a mean over tokens before the final LayerNorm")


def match_vit(g: OnnxGraph) -> VitWeights:
    stream, pool, norm, head = head_back(g)
    blocks = []
    while (node := g.make(stream)) is not None and node.op_type == "Add" and len(g.dynamic_inputs(node)) == 2:
        stream, block = block_back(g, stream)
        blocks.append(block)
    if not blocks:
        raise MatchError(g.make(stream), "expected at least one transformer block before the final LayerNorm")
    patches, cls, pos = embedding_back(g, stream)
    if (cls is None) != (pool == "mean"):
        raise MatchError(g.make(stream), "a class token needs class-token pooling and mean pooling needs no class "
                                         "token (mcuformer's two pooling forms)")  # fmt: skip
    image, weight, bias, patch = patch_back(g, patches)
    channels = g.input_shape[1]
    scale, shift = _pixel_affine(g, image, channels)
    taps = {"patch_embed": [patches], "embed": [_embedding_sum(g, stream)], "norm": [norm.output],
            "logits": [g.output], "pool": [norm.input]}  # fmt: skip
    for i, block in enumerate(blocks[::-1]):
        taps |= {f"blocks.{i}.{k}": v for k, v in block.taps.items()}
    return VitWeights(g.input_shape[2], channels, patch, scale, shift, weight, bias, cls, pos, tuple(blocks[::-1]),
                      pool, norm, head, taps)  # fmt: skip


def _embedding_sum(g: OnnxGraph, stream: str) -> str:
    """The tensor holding patch tokens + positions (the int8 model's "embed"): the stream, or what a class token
    is concatenated to."""
    node = g.make(stream)
    if node is not None and node.op_type == "Concat":
        return str(node.input[1])
    return stream
