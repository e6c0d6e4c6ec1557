"""Our VisionTransformer rebuilt as a Keras model with the same weights, in ops TensorFlow Lite Micro can run.

Same computation as mcuformer.model.VisionTransformer, except GELU: TFLite Micro registers no GELU kernel, so
the MLP uses the sigmoid form x * sigmoid(1.702 x) (LOGISTIC and MUL, both int8 in TFLM). Normalisation is folded
into the patch-embedding convolution, as our compiler folds it, so both int8 models take raw pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mcuformer.model import Attention, Block, LowRankLinear, VisionTransformer

GELU_SIGMOID_SLOPE = 1.702


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().float().numpy()


def _dense(keras: Any, x: Any, layer: torch.nn.Linear, name: str) -> Any:
    bias = layer.bias is not None
    dense = keras.layers.Dense(layer.out_features, use_bias=bias, name=name)
    y = dense(x)
    dense.set_weights([_np(layer.weight).T, _np(layer.bias)] if bias else [_np(layer.weight).T])
    return y


def _factored(keras: Any, x: Any, layer: LowRankLinear, name: str) -> Any:
    if layer.v is not None:
        x = _dense(keras, x, layer.v, f"{name}_v")
    return _dense(keras, x, layer.u, f"{name}_u" if layer.v is not None else name)


def _layernorm(keras: Any, x: Any, norm: torch.nn.LayerNorm, name: str) -> Any:
    layer = keras.layers.LayerNormalization(epsilon=norm.eps, name=name)
    y = layer(x)
    layer.set_weights([_np(norm.weight), _np(norm.bias)])
    return y


def _attention(keras: Any, x: Any, attn: Attention, tokens: int, name: str) -> Any:
    ops = keras.ops
    heads, head_dim = attn.num_heads, attn.head_dim
    dim = heads * head_dim
    qkv = _factored(keras, x, attn.qkv, f"{name}_qkv")

    def split(part: int) -> Any:
        t = qkv[:, :, part * dim : (part + 1) * dim]
        return ops.transpose(ops.reshape(t, (1, tokens, heads, head_dim)), (0, 2, 1, 3))

    q, k, v = split(0), split(1), split(2)
    scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * attn.scale
    context = ops.matmul(ops.softmax(scores, axis=-1), v)
    context = ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (1, tokens, dim))
    return _factored(keras, context, attn.proj, f"{name}_proj")


def _block(keras: Any, x: Any, block: Block, tokens: int, name: str) -> Any:
    ops = keras.ops
    x = x + _attention(keras, _layernorm(keras, x, block.norm1, f"{name}_norm1"), block.attn, tokens, f"{name}_attn")
    h = _factored(keras, _layernorm(keras, x, block.norm2, f"{name}_norm2"), block.mlp.fc1, f"{name}_fc1")
    h = h * ops.sigmoid(h * GELU_SIGMOID_SLOPE)
    return x + _factored(keras, h, block.mlp.fc2, f"{name}_fc2")


@torch.no_grad()
def keras_vit(model: VisionTransformer) -> Any:
    """A Keras model: float pixels in [0, 1], [1, H, W, C] -> logits [1, classes]."""
    import keras

    arch = model.arch
    ops = keras.ops
    dim, size = arch.embed_dim, arch.image_size
    pixels = keras.Input((size, size, arch.channels), batch_size=1, name="pixels")
    mean, std = _np(model.pixel_mean).reshape(-1), _np(model.pixel_std).reshape(-1)
    conv = _np(model.patch_embed.proj.weight)  # [D, C, P, P]
    proj_bias = model.patch_embed.proj.bias
    bias = _np(proj_bias) if proj_bias is not None else np.zeros(dim, np.float32)
    folded = conv / std[None, :, None, None]
    folded_bias = bias - (conv * (mean / std)[None, :, None, None]).sum(axis=(1, 2, 3))
    patch = keras.layers.Conv2D(dim, arch.patch_size, strides=arch.patch_size, name="patch_embed")
    x = patch(pixels)
    patch.set_weights([folded.transpose(2, 3, 1, 0), folded_bias])
    x = ops.reshape(x, (1, arch.num_patches, dim))
    pos = _np(model.pos_embed)[0]
    if model.cls_token is not None:
        cls = (_np(model.cls_token)[0, 0] + pos[0]).reshape(1, 1, dim)
        x = ops.concatenate([ops.convert_to_tensor(cls), x + pos[1:][None]], axis=1)
    else:
        x = x + pos[None]
    for index, block in enumerate(model.blocks):
        x = _block(keras, x, block, arch.num_tokens, f"b{index}")  # type: ignore[arg-type]
    pooled = x[:, 0] if model.cls_token is not None else ops.mean(x, axis=1)
    logits = _dense(keras, _layernorm(keras, pooled, model.norm, "norm"), model.head, "head")
    return keras.Model(pixels, logits, name=(arch.name or "vit").replace("-", "_"))
