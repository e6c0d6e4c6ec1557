import torch

from mcuformer.arch import PRESETS, ArchConfig, LayerRanks
from mcuformer.model import LowRankLinear, VisionTransformer


def _model(arch: ArchConfig) -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(arch, [0.5] * arch.channels, [0.25] * arch.channels)


def test_forward_shapes_and_taps_for_cls_and_mean_pooling():
    for pool in ("cls", "mean"):
        arch = ArchConfig.uniform(image_size=16, channels=3, patch_size=4, embed_dim=24, depth=2, num_heads=3,
                                  mlp_ratio=2, num_classes=7, rank=LayerRanks(qkv=8), pool=pool)  # fmt: skip
        model = _model(arch)
        seen: dict[str, tuple[int, ...]] = {}

        def observe(name, tensor, seen=seen):
            seen[name] = tuple(tensor.shape)

        logits = model(torch.rand(2, 3, 16, 16), observe=observe)
        assert logits.shape == (2, 7)
        assert seen["embed"] == (2, arch.num_tokens, 24)
        assert seen["blocks.1.attn.scores"] == (2, 3, arch.num_tokens, arch.num_tokens)
        assert seen["blocks.0.attn.qkv.mid"] == (2, arch.num_tokens, 8)
        assert ("pool" in seen) == (pool == "mean")


def test_low_rank_linear_is_the_product_of_its_factors():
    layer = LowRankLinear(12, 20, rank=4)
    x = torch.randn(3, 12)
    w = layer.u.weight @ layer.v.weight
    torch.testing.assert_close(layer(x), x @ w.T + layer.u.bias)
    assert sum(p.numel() for p in layer.parameters()) == 4 * 12 + 20 * 4 + 20


def test_explicit_attention_matches_scaled_dot_product_attention():
    model = _model(PRESETS["micro"])
    attn = model.blocks[0].attn
    x = torch.randn(2, 17, 16)
    q, k, v = attn.qkv(x).split(16, dim=-1)
    split = lambda t: t.reshape(2, 17, 2, 8).transpose(1, 2)  # noqa: E731
    ref = torch.nn.functional.scaled_dot_product_attention(split(q), split(k), split(v))
    torch.testing.assert_close(attn(x), attn.proj(ref.transpose(1, 2).reshape(2, 17, 16)))


def test_normalisation_is_inside_the_model():
    model = _model(PRESETS["micro"])
    pixels = torch.rand(1, 1, 28, 28)
    manual = model.patch_embed((pixels - 0.5) / 0.25)
    seen = {}
    model(pixels, observe=lambda n, t: seen.__setitem__(n, t))
    torch.testing.assert_close(seen["patch_embed"], manual)
