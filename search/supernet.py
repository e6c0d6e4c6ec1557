"""The supernet: one set of weights from which every architecture of a search space is a slice.

Weight entanglement: a subnet takes the leading rows/columns of every tensor (embed dim, MLP hidden width,
leading blocks for depth). Every block linear is stored as factors U [out, R] and V [R, in] with R = min(in, out)
of the largest shapes, components ordered by importance (SVD order at initialisation, kept by training every
rank as a leading slice): rank r is U[:, :r] V[:r], full rank is the product of all components. The patch
embedding kernel is stored at the largest patch size and resized to the others by the pseudo-inverse resize of
FlexiViT; position embeddings are stored on the largest token grid and interpolated to smaller grids.

`subnet_state(arch)` returns the state_dict of the plain `VisionTransformer(arch)` as differentiable functions of
the supernet's parameters; `forward(pixels, arch)` runs that plain model on them (torch.func.functional_call), so a
slice is, by construction and to the bit, the standalone model with copied weights (`extract`). The architecture
is an argument of every call: no module keeps a sampled config.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from mcuformer.arch import ArchConfig
from mcuformer.model import VisionTransformer
from mcuformer.search.space import SearchSpace


class FactoredLinear(nn.Module):
    """y = U V x + b with U [out, R], V [R, in]; a subnet slices rows of U, columns of V and leading components."""

    def __init__(self, in_features: int, out_features: int, generator: torch.Generator) -> None:
        super().__init__()
        weight = torch.empty(out_features, in_features)
        _trunc_normal(weight, generator)
        # SVD order: component i explains more of the initial weight than component i + 1.
        u, s, vh = torch.linalg.svd(weight, full_matrices=False)
        root = s.sqrt()
        self.u = nn.Parameter(u * root)
        self.v = nn.Parameter(root[:, None] * vh)
        self.bias = nn.Parameter(torch.zeros(out_features))

    @property
    def max_rank(self) -> int:
        return int(self.v.shape[0])

    def slice(self, prefix: str, in_features: int, rows: Tensor | int, rank: int | None) -> dict[str, Tensor]:
        """State of a `LowRankLinear(in_features, len(rows), rank)` under `prefix`."""
        u = self.u[:rows] if isinstance(rows, int) else self.u.index_select(0, rows)
        bias = self.bias[:rows] if isinstance(rows, int) else self.bias.index_select(0, rows)
        if rank is None:
            return {f"{prefix}.u.weight": u @ self.v[:, :in_features], f"{prefix}.u.bias": bias}
        if rank > self.max_rank:
            raise ValueError(f"rank {rank} exceeds the supernet's {self.max_rank}")
        return {
            f"{prefix}.v.weight": self.v[:rank, :in_features],
            f"{prefix}.u.weight": u[:, :rank],
            f"{prefix}.u.bias": bias,
        }


class SuperBlock(nn.Module):
    def __init__(self, dim: int, hidden: int, generator: torch.Generator) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = FactoredLinear(dim, 3 * dim, generator)
        self.proj = FactoredLinear(dim, dim, generator)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = FactoredLinear(dim, hidden, generator)
        self.fc2 = FactoredLinear(hidden, dim, generator)


class Supernet(nn.Module):
    """All architectures of `space` (with its channels and classes) in one set of weights."""

    def __init__(self, space: SearchSpace, mean: Sequence[float], std: Sequence[float], seed: int = 0) -> None:
        super().__init__()
        self.space = space
        generator = torch.Generator().manual_seed(seed)
        dim, hidden = space.max_dim, space.max_hidden
        self.max_patch = max(space.patch_sizes)
        self.max_grid = space.max_grid
        self.pixel_mean: Tensor
        self.pixel_std: Tensor
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        patch = torch.empty(dim, space.channels, self.max_patch, self.max_patch)
        bound = 1 / (space.channels * self.max_patch**2) ** 0.5  # nn.Conv2d's default init
        self.patch_weight = nn.Parameter(patch.uniform_(-bound, bound, generator=generator))
        self.patch_bias = nn.Parameter(torch.zeros(dim).uniform_(-bound, bound, generator=generator))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.cls_pos = nn.Parameter(torch.randn(1, 1, dim, generator=generator) * 0.02)
        self.grid_pos = nn.Parameter(torch.randn(1, self.max_grid**2, dim, generator=generator) * 0.02)
        self.blocks = nn.ModuleList(SuperBlock(dim, hidden, generator) for _ in range(space.max_depth))
        self.norm = nn.LayerNorm(dim)
        head = torch.empty(space.num_classes, dim)
        _trunc_normal(head, generator)
        self.head_weight = nn.Parameter(head)
        self.head_bias = nn.Parameter(torch.zeros(space.num_classes))

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(float(v) for v in self.pixel_mean.flatten())

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(float(v) for v in self.pixel_std.flatten())

    def check(self, arch: ArchConfig) -> None:
        if not self.space.contains(arch):
            raise ValueError(f"architecture {arch} is not in the search space {self.space.name}")

    def subnet_state(self, arch: ArchConfig) -> dict[str, Tensor]:
        """The state_dict of `VisionTransformer(arch)` sliced from this supernet (differentiable)."""
        self.check(arch)
        d, grid = arch.embed_dim, arch.grid
        state: dict[str, Tensor] = {"pixel_mean": self.pixel_mean, "pixel_std": self.pixel_std}
        kernel = resize_patch_kernel(self.patch_weight[:d], arch.patch_size)
        state["patch_embed.proj.weight"] = kernel
        state["patch_embed.proj.bias"] = self.patch_bias[:d]
        pos = self.grid_pos[:, :, :d]
        if grid != self.max_grid:
            square = pos.reshape(1, self.max_grid, self.max_grid, d).permute(0, 3, 1, 2)
            square = F.interpolate(square, size=(grid, grid), mode="bilinear", align_corners=False, antialias=True)
            pos = square.permute(0, 2, 3, 1).reshape(1, grid * grid, d)
        if arch.pool == "cls":
            state["cls_token"] = self.cls_token[:, :, :d]
            pos = torch.cat([self.cls_pos[:, :, :d], pos], dim=1)
        state["pos_embed"] = pos
        qkv_rows = torch.cat([torch.arange(d) + part * self.space.max_dim for part in range(3)])
        for layer in range(arch.depth):
            block: SuperBlock = self.blocks[layer]  # type: ignore[assignment]
            prefix, ranks, hidden = f"blocks.{layer}", arch.ranks[layer], arch.mlp_hidden(layer)
            state[f"{prefix}.norm1.weight"] = block.norm1.weight[:d]
            state[f"{prefix}.norm1.bias"] = block.norm1.bias[:d]
            state[f"{prefix}.norm2.weight"] = block.norm2.weight[:d]
            state[f"{prefix}.norm2.bias"] = block.norm2.bias[:d]
            state.update(block.qkv.slice(f"{prefix}.attn.qkv", d, qkv_rows.to(block.qkv.u.device), ranks.qkv))
            state.update(block.proj.slice(f"{prefix}.attn.proj", d, d, ranks.proj))
            state.update(block.fc1.slice(f"{prefix}.mlp.fc1", d, hidden, ranks.fc1))
            state.update(block.fc2.slice(f"{prefix}.mlp.fc2", hidden, d, ranks.fc2))
        state["norm.weight"] = self.norm.weight[:d]
        state["norm.bias"] = self.norm.bias[:d]
        state["head.weight"] = self.head_weight[:, :d]
        state["head.bias"] = self.head_bias
        return state

    def forward(self, pixels: Tensor, arch: ArchConfig) -> Tensor:
        """Logits of the subnet `arch` on pixels in [0, 1] at arch.image_size.

        The sliced tensors are made contiguous first, as `extract` stores them: the plain model then runs the
        same kernels on the same layouts, so a slice equals the standalone model bit for bit on every CPU (a
        strided view can take another GEMM path and round differently)."""
        state = {name: tensor.contiguous() for name, tensor in self.subnet_state(arch).items()}
        return functional_call(_skeleton(arch), state, (pixels,), strict=True)

    @torch.no_grad()
    def extract(self, arch: ArchConfig) -> VisionTransformer:
        """The standalone model of `arch` with its weights copied out of the supernet (inherited weights)."""
        model = VisionTransformer(arch, self.mean, self.std)
        model.load_state_dict({k: v.detach().contiguous().clone() for k, v in self.subnet_state(arch).items()})
        return model.to(self.pixel_mean.device).eval()


@functools.lru_cache(maxsize=256)
def _skeleton(arch: ArchConfig) -> VisionTransformer:
    """A weightless plain model of `arch` whose forward runs on the tensors functional_call passes in."""
    with torch.device("meta"):
        return VisionTransformer(arch, [0.0] * arch.channels, [1.0] * arch.channels)


def _trunc_normal(tensor: Tensor, generator: torch.Generator, std: float = 0.02) -> None:
    """timm's trunc_normal_(std=0.02), from a seeded generator (values beyond 2 std are redrawn)."""
    with torch.no_grad():
        tensor.normal_(0.0, std, generator=generator)
        for _ in range(10):
            out = tensor.abs() > 2 * std
            if not out.any():
                break
            tensor[out] = torch.randn(int(out.sum()), generator=generator) * std


@functools.lru_cache(maxsize=64)
def _pi_resize_matrix(old: int, new: int) -> Tensor:
    """[old*old, new*new]: w_new = w_old @ M keeps <x, w_old> = <resize(x), w_new> (FlexiViT's PI-resize)."""
    eye = torch.eye(old * old, dtype=torch.float64).reshape(old * old, 1, old, old)
    resize = F.interpolate(eye, size=(new, new), mode="bilinear", align_corners=False).reshape(old * old, new * new)
    # resize: rows are basis patches, so resize.T is B (x -> resize(x)); solve B^T w_new = w_old.
    return torch.linalg.pinv(resize.T).to(torch.float32).contiguous()


def resize_patch_kernel(kernel: Tensor, patch: int) -> Tensor:
    """A [d, C, P0, P0] patch-embedding kernel resized to [d, C, patch, patch]."""
    old = kernel.shape[-1]
    if patch == old:
        return kernel
    matrix = _pi_resize_matrix(old, patch).to(kernel.device)
    flat = kernel.reshape(-1, old * old) @ matrix
    return flat.reshape(kernel.shape[0], kernel.shape[1], patch, patch)
