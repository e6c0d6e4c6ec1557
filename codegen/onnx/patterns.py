"""The ViT pattern over an OnnxGraph, matched backward from the logits, into weights in mcuformer's layout.

Blocks (pre-norm attention and MLP halves with residual adds), the token embedding (patch embedding, class token,
positions, input normalisation) and the head (pooling, final LayerNorm, classifier) are read from the layer
patterns of `layers` and `attention`; the first place the model leaves the supported structure raises MatchError
naming its node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mcuformer.codegen.onnx.attention import attention_back, probe, squeeze_lead
from mcuformer.codegen.onnx.errors import MatchError
from mcuformer.codegen.onnx.graph import OnnxGraph
from mcuformer.codegen.onnx.layers import Linear, Norm, f64, gelu_back, linear_back, norm_back


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
        c = f64(const)
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
        weight = f64(g.values[conv.input[1]])
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
            conv_bias = f64(g.values[conv.input[2]])
            bias = conv_bias if bias is None else conv_bias + f64(bias).reshape(-1)
        dim, grid = weight.shape[0], size // patch
        index = squeeze_lead(probe(g, src, path, tokens), 2)
        expected = np.arange(dim)[None, :] * grid * grid + np.arange(grid * grid)[:, None]
        if index.shape != expected.shape or not (index == expected).all():
            raise MatchError(path[0] if path else conv, "patch tokens must be the conv output flattened row-major "
                                                        "and transposed to [patches, channels]")  # fmt: skip
        bias_vec = np.zeros(dim) if bias is None else np.broadcast_to(f64(bias).reshape(-1), (dim,)).copy()
        return conv.input[0], weight, bias_vec, patch
    linear = linear_back(g, src)
    if linear.v is not None:
        raise MatchError(linear.node, "a low-rank patch embedding is not supported")
    if path:
        index = squeeze_lead(probe(g, src, path, tokens), 2)
        if not (index.reshape(-1) == np.arange(index.size)).all():
            raise MatchError(path[0], "patch tokens must keep the linear's [patches, channels] layout")
    image, image_path = g.skip_layout_back(linear.input)
    pixels = squeeze_lead(probe(g, image, image_path, linear.input), 2)  # [patches, patch_dim] pixel indices
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
        pos = f64(pos).reshape(-1, f64(pos).shape[-1])
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
        pos = f64(pos).reshape(-1, f64(pos).shape[-1])
        return tokens, cls, np.concatenate([np.zeros((1, pos.shape[1])), pos])
    raise MatchError(node, "expected the token embedding (patch embedding + position embedding, optional class "
                           "token concatenated first)")  # fmt: skip


def _cls_concat(g: OnnxGraph, node: object) -> tuple[np.ndarray, str]:
    inputs = list(node.input)  # type: ignore[attr-defined]
    axis = g.attr(node, "axis", 0)
    rank = len(g.shape(inputs[0]))
    if len(inputs) != 2 or axis not in (1, 1 - rank) or inputs[0] in g.dynamic or inputs[1] not in g.dynamic:
        raise MatchError(node, "only one class token, concatenated before the patch tokens, is supported")
    cls = f64(g.values[inputs[0]])
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
        selected = squeeze_lead(probe(g, src, path, head.input), 1)
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
        selected = squeeze_lead(probe(g, pooled, pooled_path, norm.input), 1)
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
