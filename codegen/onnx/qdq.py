"""The int8 model as a QDQ ONNX graph: QuantizeLinear/DequantizeLinear pairs around float ops.

Semantics (what a QDQ runtime computes, and how it relates to mcuformer's integer reference):
- weights are the int8 model's weights, symmetric per output channel (DequantizeLinear on int8 initializers,
  axis = output channel); biases are its int32 biases at scale input_scale * weight_scale;
- every activation the int8 model stores in int8 (patch tokens, token embedding, each LayerNorm, q, k, v,
  scores, context, low-rank middles, every linear output, GELU output, residual sums, pooled vector, logits)
  goes through a QuantizeLinear/DequantizeLinear pair with exactly its (scale, zero point);
- between the pairs the ops run in float: LayerNormalization, Softmax, Erf GELU, Add, MatMul. The integer
  reference computes the same ops with integer LayerNorm, a Q15 exponent table, a GELU table and fixed-point
  requantization, so the two agree up to those roundings (the tests bound the difference in logit steps), not
  bit for bit; the softmax output stays float (the integer kernel's Q8 probabilities have 257 levels).
- the input is pixels in [0, 1] quantized at 1/255 with zero point -128 (normalisation is folded into the
  patch embedding weights, as on the device); the output `logits` is dequantized (int8 = logits / scale + zp).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mcuformer.checkpoint import ModelFile
from mcuformer.codegen.onnx import metadata
from mcuformer.errors import McuformerError
from mcuformer.model import Block, LowRankLinear
from mcuformer.quant.ptq import quantize_model
from mcuformer.quant.qmodel import QFactored, QLinear, QParams, QViT

OPSET = 19  # the first opset whose QuantizeLinear/DequantizeLinear onnx's reference evaluator implements


def _weight_scale(weight: np.ndarray) -> np.ndarray:
    """Per-output-channel scale of the int8 weights (ptq.quantize_linear's rule; checked against its output)."""
    scale = np.abs(weight.astype(np.float64)).max(axis=1) / 127.0
    return np.where(scale > 0, scale, 1.0)


def _fp32(t: object) -> np.ndarray:
    return t.detach().cpu().double().numpy()  # type: ignore[attr-defined]


class _Graph:
    """Nodes and initializers of the QDQ graph under construction (unique names from a counter)."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def const(self, stem: str, value: np.ndarray | np.generic) -> str:
        name = self.name(stem)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], stem: str, outputs: int = 1, **attrs: Any) -> list[str]:
        names = [self.name(f"{stem}_out") for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=self.name(stem), **attrs))
        return names

    def op1(self, op_type: str, inputs: list[str], stem: str, **attrs: Any) -> str:
        return self.op(op_type, inputs, stem, **attrs)[0]

    def qdq(self, x: str, q: QParams, stem: str) -> str:
        scale = self.const(f"{stem}_scale", np.float32(q.scale))
        zero = self.const(f"{stem}_zero_point", np.int8(q.zero_point))
        quantized = self.op1("QuantizeLinear", [x, scale, zero], f"{stem}_q")
        return self.op1("DequantizeLinear", [quantized, scale, zero], f"{stem}_dq")

    def dequant(self, stem: str, values: np.ndarray, scale: np.ndarray | float, axis: int = 1, zero: int = 0) -> str:
        """DequantizeLinear of an integer initializer: per axis for an array of scales, else per tensor."""
        q = self.const(f"{stem}_quantized", values)
        s = self.const(f"{stem}_scale", np.asarray(scale, np.float32))
        inputs = [q, s] if np.ndim(scale) else [q, s, self.const(f"{stem}_zero_point", values.dtype.type(zero))]
        return self.op1("DequantizeLinear", inputs, f"{stem}_dq", axis=axis)


def _linear(g: _Graph, x: str, q: QLinear, fp32_weight: np.ndarray, stem: str) -> str:
    """MatMul with int8 per-channel weights + int32 bias, output quantized at q.output."""
    w_scale = _weight_scale(fp32_weight)
    if not np.array_equal(np.clip(np.round(fp32_weight / w_scale[:, None]), -127, 127), q.weight):
        raise McuformerError(f"QDQ export: {stem} weights differ from the int8 model's (quantizer changed?)")
    weight = g.dequant(f"{stem}_weight", q.weight.T.copy(), w_scale, axis=1)
    bias = g.dequant(f"{stem}_bias", q.bias.astype(np.int32), q.input.scale * w_scale, axis=0)
    y = g.op1("Add", [g.op1("MatMul", [x, weight], f"{stem}_matmul"), bias], f"{stem}_bias_add")
    return g.qdq(y, q.output, stem)


def _factored(g: _Graph, x: str, q: QFactored, layer: LowRankLinear, stem: str) -> str:
    if q.v is not None and layer.v is not None:
        x = _linear(g, x, q.v, _fp32(layer.v.weight), f"{stem}_v")
    return _linear(g, x, q.u, _fp32(layer.u.weight), f"{stem}_u" if q.v is not None else stem)


def _layernorm(g: _Graph, x: str, norm: object, out: QParams, stem: str) -> str:
    weight = g.const(f"{stem}_weight", _fp32(norm.weight).astype(np.float32))  # type: ignore[attr-defined]
    bias = g.const(f"{stem}_bias", _fp32(norm.bias).astype(np.float32))  # type: ignore[attr-defined]
    eps = float(norm.eps)  # type: ignore[attr-defined]
    return g.qdq(g.op1("LayerNormalization", [x, weight, bias], stem, axis=-1, epsilon=eps), out, stem)


def _gelu(g: _Graph, x: str, form: str, stem: str) -> str:
    """GELU in opset-17 ops (no Gelu op before opset 20), in the model's form."""
    half = g.const(f"{stem}_half", np.float32(0.5))
    one = g.const(f"{stem}_one", np.float32(1.0))
    if form == "tanh":
        cube = g.op1("Mul", [x, g.op1("Mul", [x, x], f"{stem}_sq")], f"{stem}_cube")
        inner = g.op1("Add", [x, g.op1("Mul", [cube, g.const(f"{stem}_c", np.float32(0.044715))], f"{stem}_cm")],
                      f"{stem}_inner")  # fmt: skip
        scaled = g.op1("Mul", [inner, g.const(f"{stem}_k", np.float32(math.sqrt(2.0 / math.pi)))], f"{stem}_ks")
        core = g.op1("Tanh", [scaled], f"{stem}_tanh")
    else:
        core = g.op1("Erf", [g.op1("Div", [x, g.const(f"{stem}_sqrt2", np.float32(math.sqrt(2.0)))], f"{stem}_d")],
                     f"{stem}_erf")  # fmt: skip
    gate = g.op1("Mul", [g.op1("Add", [core, one], f"{stem}_plus1"), half], f"{stem}_gate")
    return g.op1("Mul", [x, gate], stem)


def build_qdq(model_file: ModelFile) -> onnx.ModelProto:
    """The QDQ graph of a model file's int8 model (see the module docstring for its semantics)."""
    model = model_file.model.eval()
    arch = model.arch
    qvit: QViT = quantize_model(model, model_file.calibration)
    g = _Graph()
    dim, size, patch = arch.embed_dim, arch.image_size, arch.patch_size
    x = g.qdq("pixels", qvit.input, "input")
    # Patch embedding: the int8 weights carry the folded normalisation, stored (row, col, channel) per patch.
    std = _fp32(model.pixel_std).reshape(-1)
    conv = _fp32(model.patch_embed.proj.weight) / std[None, :, None, None]
    flat = conv.transpose(0, 2, 3, 1).reshape(dim, -1)
    pe = qvit.patch_embed
    w_scale = _weight_scale(flat)
    if not np.array_equal(np.clip(np.round(flat / w_scale[:, None]), -127, 127), pe.weight):
        raise McuformerError("QDQ export: patch embedding weights differ from the int8 model's")
    conv_q = pe.weight.reshape(dim, patch, patch, arch.channels).transpose(0, 3, 1, 2).copy()
    weight = g.dequant("patch_weight", conv_q, w_scale, axis=0)
    bias = g.dequant("patch_bias", pe.bias.astype(np.int32), pe.input.scale * w_scale, axis=0)
    y = g.op1("Conv", [x, weight, bias], "patch_conv", kernel_shape=[patch, patch], strides=[patch, patch])
    y = g.op1("Reshape", [y, g.const("patch_shape", np.array([0, dim, -1], np.int64))], "patch_flatten")
    y = g.qdq(g.op1("Transpose", [y], "patch_tokens", perm=[0, 2, 1]), pe.output, "patch_embed")
    pos_q = qvit.pos_add.b
    pos = g.dequant("pos_embed", qvit.pos_embed, pos_q.scale, zero=pos_q.zero_point)
    tokens = g.qdq(g.op1("Add", [y, pos], "pos_add"), qvit.pos_add.output, "embed")
    if qvit.cls_row is not None:
        q = qvit.pos_add.output
        row = (qvit.cls_row.astype(np.float64) - q.zero_point) * q.scale
        cls = g.const("cls_row", row.reshape(1, 1, dim).astype(np.float32))
        batch = g.op1("Slice", [g.op1("Shape", [tokens], "batch_shape"), g.const("s0", np.array([0], np.int64)),
                                g.const("s1", np.array([1], np.int64))], "batch")  # fmt: skip
        shape = g.op1("Concat", [batch, g.const("cls_shape", np.array([1, dim], np.int64))], "cls_shape", axis=0)
        tokens = g.op1("Concat", [g.op1("Expand", [cls, shape], "cls_expand"), tokens], "cls_concat", axis=1)
    n = arch.num_tokens
    for i, (qb, block) in enumerate(zip(qvit.blocks, cast(list[Block], list(model.blocks)), strict=True)):
        p = f"blocks_{i}"
        heads, hd = arch.num_heads[i], arch.head_dim(i)
        h = _layernorm(g, tokens, block.norm1, qb.norm1.output, f"{p}_norm1")
        attn = block.attn
        if qb.qkv_v is not None and attn.qkv.v is not None:
            h = _linear(g, h, qb.qkv_v, _fp32(attn.qkv.v.weight), f"{p}_qkv_v")
        u = _fp32(attn.qkv.u.weight)
        parts = []
        for j, (part, ql) in enumerate((("q", qb.q), ("k", qb.k), ("v", qb.v))):
            parts.append(_linear(g, h, ql, u[j * dim : (j + 1) * dim], f"{p}_{part}"))
        shape = g.const(f"{p}_heads", np.array([0, n, heads, hd], np.int64))
        q_, k_, v_ = (g.op1("Reshape", [t, shape], f"{p}_split_heads") for t in parts)
        q_ = g.op1("Transpose", [q_], f"{p}_q_heads", perm=[0, 2, 1, 3])
        k_ = g.op1("Transpose", [k_], f"{p}_k_heads", perm=[0, 2, 3, 1])
        v_ = g.op1("Transpose", [v_], f"{p}_v_heads", perm=[0, 2, 1, 3])
        scores = g.op1("Mul", [g.op1("MatMul", [q_, k_], f"{p}_qk"), g.const(f"{p}_scale", np.float32(attn.scale))],
                       f"{p}_scaled")  # fmt: skip
        scores = g.qdq(scores, qb.attn.score, f"{p}_scores")
        probs = g.op1("Softmax", [scores], f"{p}_softmax", axis=-1)
        ctx = g.op1("Transpose", [g.op1("MatMul", [probs, v_], f"{p}_pv")], f"{p}_merge", perm=[0, 2, 1, 3])
        ctx = g.op1("Reshape", [ctx, g.const(f"{p}_tokens", np.array([0, n, dim], np.int64))], f"{p}_ctx")
        ctx = g.qdq(ctx, qb.attn.output, f"{p}_context")
        proj = _factored(g, ctx, qb.proj, attn.proj, f"{p}_proj")
        tokens = g.qdq(g.op1("Add", [tokens, proj], f"{p}_res1"), qb.res1.output, f"{p}_res1")
        h = _layernorm(g, tokens, block.norm2, qb.norm2.output, f"{p}_norm2")
        h = _factored(g, h, qb.fc1, block.mlp.fc1, f"{p}_fc1")
        act_q = (qb.fc2.v or qb.fc2.u).input
        h = g.qdq(_gelu(g, h, arch.gelu, f"{p}_gelu"), act_q, f"{p}_act")
        h = _factored(g, h, qb.fc2, block.mlp.fc2, f"{p}_fc2")
        tokens = g.qdq(g.op1("Add", [tokens, h], f"{p}_res2"), qb.res2.output, f"{p}_res2")
    if qvit.pool is None:
        pooled = g.op1("Gather", [tokens, g.const("cls_index", np.array(0, np.int64))], "cls_pool", axis=1)
    else:
        axes = g.const("pool_axes", np.array([1], np.int64))  # an input from opset 18 on
        pooled = g.op1("ReduceMean", [tokens, axes], "mean_pool", keepdims=0)
        pooled = g.qdq(pooled, qvit.pool.output, "pool")
    h = _layernorm(g, pooled, model.norm, qvit.norm.output, "norm")
    logits = _linear(g, h, qvit.head, _fp32(model.head.weight), "head")
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"], name="logits"))
    shape_in: list[str | int] = ["batch", arch.channels, size, size]
    graph = helper.make_graph(
        g.nodes, f"{arch.name or 'mcuformer'}_qdq",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, shape_in)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", arch.num_classes])],
        g.initializers,
    )  # fmt: skip
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="mcuformer")
    onnx_model.ir_version = 8
    return onnx_model


def export_qdq(model_file: ModelFile, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx_model = build_qdq(model_file)
    metadata.write(onnx_model, model_file, "qdq")
    onnx.checker.check_model(onnx_model, full_check=True)
    onnx.save(onnx_model, str(out))
    return out
