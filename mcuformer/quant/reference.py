"""The numpy integer reference interpreter of a QViT: the outputs every device build must equal."""

from __future__ import annotations

import numpy as np

from mcuformer.quant import ops
from mcuformer.quant.qmodel import QBlock, QViT


def quantize_pixels(images: np.ndarray) -> np.ndarray:
    """uint8 pixels [..., H, W, C] -> the model's int8 input (pixel - 128)."""
    if images.dtype != np.uint8:
        raise TypeError(f"images must be uint8 pixels, got {images.dtype}")
    return (images.astype(np.int16) - 128).astype(np.int8)


def run_block(block: QBlock, tokens: np.ndarray) -> np.ndarray:
    h = block.norm1(tokens)
    t = block.qkv_v(h) if block.qkv_v is not None else h
    context = block.attn(block.q(t), block.k(t), block.v(t))
    tokens = block.res1(tokens, block.proj(context))
    h = block.norm2(tokens)
    hidden = ops.lut(block.fc1(h), block.gelu_table)
    return block.res2(tokens, block.fc2(hidden))


def forward(model: QViT, images: np.ndarray) -> np.ndarray:
    """uint8 images [B, H, W, C] -> int8 logits [B, classes] (scale/zero point in model.logits)."""
    arch = model.arch
    x = quantize_pixels(images)
    pe = model.patch_embed
    patches = ops.patch_embed(
        x, arch.patch_size, pe.weight, pe.bias, pe.mult, pe.shift, pe.input.zero_point, pe.output.zero_point
    )
    tokens = model.pos_add(patches, model.pos_embed)
    if model.cls_row is not None:
        cls = np.broadcast_to(model.cls_row, (tokens.shape[0], 1, arch.embed_dim))
        tokens = np.concatenate([cls, tokens], axis=1)
    for block in model.blocks:
        tokens = run_block(block, tokens)
    if model.pool is None:
        pooled = tokens[:, 0]
    else:
        p = model.pool
        pooled = ops.mean_pool(tokens, p.input.zero_point, p.mult, p.shift, p.output.zero_point)
    return model.head(model.norm(pooled))


def predict(model: QViT, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """int8 logits for many images, in batches to bound memory."""
    return np.concatenate(
        [forward(model, images[i : i + batch_size]) for i in range(0, len(images), batch_size)], axis=0
    )
