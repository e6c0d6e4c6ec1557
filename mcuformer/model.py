"""The plain PyTorch ViT built from an ArchConfig (timm-like, explicit attention, low-rank linears).

Every forward takes an optional `observe(name, tensor)` callback, called on each tensor that the int8 model
quantizes: calibration collects their ranges; quantization-aware training returns a replacement (the tensor
rounded to its int8 grid), which the forward then uses. The tap names are the contract with `mcuformer.quant`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcuformer.arch import ArchConfig

Observer = Callable[[str, Tensor], Tensor | None] | None


def _tap(observe: Observer, name: str, tensor: Tensor) -> Tensor:
    if observe is not None:
        replaced = observe(name, tensor)
        if replaced is not None:
            return replaced
    return tensor


class LowRankLinear(nn.Module):
    """y = U (V x) + b with V: rank x in and U: out x rank; a plain Linear when rank is None."""

    def __init__(self, in_features: int, out_features: int, rank: int | None) -> None:
        super().__init__()
        self.rank = rank
        self.v = nn.Linear(in_features, rank, bias=False) if rank is not None else None
        self.u = nn.Linear(rank if rank is not None else in_features, out_features)

    def forward(self, x: Tensor, observe: Observer = None, name: str = "") -> Tensor:
        if self.v is not None:
            x = _tap(observe, f"{name}.mid", self.v(x))
        return self.u(x)


class PatchEmbed(nn.Module):
    """Non-overlapping patches projected to embed_dim (a strided conv = one matrix product per patch)."""

    def __init__(self, patch_size: int, channels: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, patches, dim], patches in row-major order


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_rank: int | None, proj_rank: int | None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = LowRankLinear(dim, 3 * dim, qkv_rank)
        self.proj = LowRankLinear(dim, dim, proj_rank)

    def forward(self, x: Tensor, observe: Observer = None, name: str = "") -> Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x, observe, f"{name}.qkv")
        q, k, v = (
            _tap(observe, f"{name}.{part}", t).reshape(batch, tokens, self.num_heads, self.head_dim).transpose(1, 2)
            for part, t in zip("qkv", qkv.split(dim, dim=-1), strict=True)
        )
        scores = _tap(observe, f"{name}.scores", (q @ k.transpose(-2, -1)) * self.scale)
        out = _tap(observe, f"{name}.probs", scores.softmax(dim=-1)) @ v
        out = _tap(observe, f"{name}.context", out.transpose(1, 2).reshape(batch, tokens, dim))
        return _tap(observe, f"{name}.proj", self.proj(out, observe, f"{name}.proj"))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, fc1_rank: int | None, fc2_rank: int | None, gelu: str = "erf") -> None:
        super().__init__()
        self.approximate = "tanh" if gelu == "tanh" else "none"
        self.fc1 = LowRankLinear(dim, hidden, fc1_rank)
        self.fc2 = LowRankLinear(hidden, dim, fc2_rank)

    def forward(self, x: Tensor, observe: Observer = None, name: str = "") -> Tensor:
        x = _tap(observe, f"{name}.fc1", self.fc1(x, observe, f"{name}.fc1"))
        x = _tap(observe, f"{name}.act", F.gelu(x, approximate=self.approximate))
        return _tap(observe, f"{name}.fc2", self.fc2(x, observe, f"{name}.fc2"))


class Block(nn.Module):
    def __init__(self, arch: ArchConfig, layer: int) -> None:
        super().__init__()
        dim, ranks = arch.embed_dim, arch.ranks[layer]
        self.norm1 = nn.LayerNorm(dim, eps=arch.norm_eps)
        self.attn = Attention(dim, arch.num_heads[layer], ranks.qkv, ranks.proj)
        self.norm2 = nn.LayerNorm(dim, eps=arch.norm_eps)
        self.mlp = Mlp(dim, arch.mlp_hidden(layer), ranks.fc1, ranks.fc2, arch.gelu)

    def forward(self, x: Tensor, observe: Observer = None, name: str = "") -> Tensor:
        h = _tap(observe, f"{name}.norm1", self.norm1(x))
        x = _tap(observe, f"{name}.res1", x + self.attn(h, observe, f"{name}.attn"))
        h = _tap(observe, f"{name}.norm2", self.norm2(x))
        return _tap(observe, f"{name}.res2", x + self.mlp(h, observe, f"{name}.mlp"))


class VisionTransformer(nn.Module):
    """Input: pixels scaled to [0, 1], [B, C, H, W]. Normalisation is part of the model (folded when quantized)."""

    def __init__(self, arch: ArchConfig, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != arch.channels or len(std) != arch.channels:
            raise ValueError(f"mean/std need {arch.channels} channels, got {len(mean)}/{len(std)}")
        self.arch = arch
        dim = arch.embed_dim
        self.pixel_mean: Tensor
        self.pixel_std: Tensor
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.patch_embed = PatchEmbed(arch.patch_size, arch.channels, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if arch.pool == "cls" else None
        self.pos_embed = nn.Parameter(torch.randn(1, arch.num_tokens, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(arch, layer) for layer in range(arch.depth))
        self.norm = nn.LayerNorm(dim, eps=arch.norm_eps)
        self.head = nn.Linear(dim, arch.num_classes)
        self.apply(_init_weights)

    def forward(self, pixels: Tensor, observe: Observer = None) -> Tensor:
        x = (pixels - self.pixel_mean) / self.pixel_std
        patches = _tap(observe, "patch_embed", self.patch_embed(x))
        pos = self.pos_embed
        if self.cls_token is not None:
            patches = patches + pos[:, 1:]
            cls = (self.cls_token + pos[:, :1]).expand(patches.shape[0], -1, -1)
            x = torch.cat([cls, patches], dim=1)
        else:
            x = patches + pos
        x = _tap(observe, "embed", x)
        for index, block in enumerate(self.blocks):
            x = block(x, observe, f"blocks.{index}")
        pooled = x[:, 0] if self.cls_token is not None else _tap(observe, "pool", x.mean(dim=1))
        pooled = _tap(observe, "norm", self.norm(pooled))
        return _tap(observe, "logits", self.head(pooled))


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
