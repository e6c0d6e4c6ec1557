"""Models for the ONNX tests: timm ViTs and mcuformer ViTs rewritten into the other export forms."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mcuformer.arch import ArchConfig
from mcuformer.model import Attention, VisionTransformer

_TORCHVISION_SHIM: list[Any] = []


def import_timm() -> Any:
    """timm, which imports torchvision. PyPI's torchvision wheel is built for CUDA torch: with the CPU torch
    its compiled ops do not load and its import stops at registering a fake kernel for the missing
    `torchvision::nms`. Declaring those two op schemas lets it import; timm's ViT never calls them."""
    spec = importlib.util.find_spec("torchvision")
    if spec is not None and spec.origin is not None and not _TORCHVISION_SHIM:
        try:
            torch.ops.load_library(str(Path(spec.origin).parent / "_C.so"))
        except OSError:
            lib = torch.library.Library("torchvision", "DEF")
            for op in ("nms", "qnms"):
                lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _TORCHVISION_SHIM.append(lib)
    import timm

    return timm


def export(model: nn.Module, shape: tuple[int, ...], path: Path, opset: int | None = 17, dynamo: bool = False) -> Path:
    """torch.onnx.export with the TorchScript exporter, or the dynamo exporter (onnxscript; its default opset)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.rand(1, *shape),), str(path), dynamo=dynamo, opset_version=opset,
                          verbose=False)  # fmt: skip
    return path


def timm_vit(pool: str = "token", fused_attn: bool = True, seed: int = 0, **kwargs: Any) -> nn.Module:
    """A small timm vit_* (random weights) for 28x28 greyscale images."""
    timm = import_timm()
    torch.manual_seed(seed)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=28, patch_size=7, in_chans=1,
                              embed_dim=32, depth=2, num_heads=2, num_classes=10, global_pool=pool,
                              class_token=pool == "token", **kwargs)  # fmt: skip
    for block in model.blocks:
        block.attn.fused_attn = fused_attn
    with torch.no_grad():  # timm starts biases, LayerNorms, class token, LayerScale at constants: make them count
        for name, p in model.named_parameters():
            if name.endswith(("bias", "gamma")) or "norm" in name or name == "cls_token":
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


class DecomposedLayerNorm(nn.Module):
    """nn.LayerNorm written out: exports as ReduceMean / Sub / Pow / Add / Sqrt / Div / Mul / Add."""

    def __init__(self, norm: nn.LayerNorm) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        centred = x - mean
        var = centred.pow(2).mean(dim=-1, keepdim=True)
        return centred / torch.sqrt(var + self.eps) * self.weight + self.bias


class MatMulPatchEmbed(nn.Module):
    """The conv patch embedding as patch Reshape/Transpose + one MatMul (pixel order: row, column, channel)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.patch = conv.kernel_size[0]
        dim = conv.out_channels
        self.weight = nn.Parameter(conv.weight.detach().permute(0, 2, 3, 1).reshape(dim, -1).T.contiguous())
        self.bias = conv.bias

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        p = self.patch
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), -1)
        return x @ self.weight + self.bias


class SeparateQkvAttention(nn.Module):
    """Attention with separate q, k, v linears and q scaled before the product (Hugging Face ViT style)."""

    def __init__(self, attn: Attention) -> None:
        super().__init__()
        dim = attn.num_heads * attn.head_dim
        self.heads, self.head_dim, self.proj = attn.num_heads, attn.head_dim, attn.proj
        self.q, self.k, self.v = (nn.Linear(dim, dim) for _ in range(3))
        weight, bias = attn.qkv.u.weight.detach(), attn.qkv.u.bias.detach()
        with torch.no_grad():
            for i, linear in enumerate((self.q, self.k, self.v)):
                linear.weight.copy_(weight[i * dim : (i + 1) * dim])
                linear.bias.copy_(bias[i * dim : (i + 1) * dim])

    def forward(self, x: Tensor, observe: object = None, name: str = "") -> Tensor:
        b, n, d = x.shape
        q, k, v = (f(x).reshape(b, n, self.heads, self.head_dim).permute(0, 2, 1, 3) for f in (self.q, self.k, self.v))
        attn = ((q / self.head_dim**0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).permute(0, 2, 1, 3).reshape(b, n, d))


def rewritten_vit(
    arch: ArchConfig,
    seed: int = 0,
    matmul_patches: bool = False,
    decomposed_norm: bool = False,
    separate_qkv: bool = False,
) -> tuple[VisionTransformer, VisionTransformer]:
    """(reference mcuformer ViT, the same model with modules swapped for other export forms)."""
    torch.manual_seed(seed)
    ref = VisionTransformer(arch, [0.25] * arch.channels, [0.5] * arch.channels).eval()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith("bias") or "norm" in name or name == "cls_token":
                p.add_(0.1 * torch.randn_like(p))
    alt = VisionTransformer(arch, [0.25] * arch.channels, [0.5] * arch.channels).eval()
    alt.load_state_dict(ref.state_dict())
    if matmul_patches:
        alt.patch_embed.proj = MatMulPatchEmbed(alt.patch_embed.proj)  # type: ignore[assignment]
        alt.patch_embed.forward = alt.patch_embed.proj.forward  # type: ignore[method-assign]
    if decomposed_norm:
        for block in alt.blocks:
            block.norm1 = DecomposedLayerNorm(block.norm1)  # type: ignore[assignment]
            block.norm2 = DecomposedLayerNorm(block.norm2)  # type: ignore[assignment]
        alt.norm = DecomposedLayerNorm(alt.norm)  # type: ignore[assignment]
    if separate_qkv:
        for block in alt.blocks:
            block.attn = SeparateQkvAttention(block.attn)  # type: ignore[assignment]
    return ref, alt
