import json

import pytest

from mcuformer.arch import PRESETS, ArchConfig, ArchError, LayerRanks, load_arch


def test_presets_are_valid_and_round_trip_through_json(tmp_path):
    for name, arch in PRESETS.items():
        path = tmp_path / f"{name}.json"
        arch.save(path)
        loaded = load_arch(path)
        assert loaded == arch
        assert loaded.name == name


def test_derived_sizes():
    arch = PRESETS["cifar-p4-d64"]
    assert (arch.grid, arch.num_patches, arch.num_tokens, arch.patch_dim) == (8, 64, 65, 48)
    assert arch.linear_shape(0, "fc1") == (64, 128)
    mean_pool = ArchConfig.uniform(image_size=32, channels=3, patch_size=4, embed_dim=64, depth=1,
                                   num_heads=4, mlp_ratio=2, num_classes=10, pool="mean")  # fmt: skip
    assert mean_pool.num_tokens == 64


def test_low_rank_counts_fewer_params():
    base = dict(image_size=32, channels=3, patch_size=4, embed_dim=64, depth=2, num_heads=4, mlp_ratio=2,
                num_classes=10)  # fmt: skip
    full = ArchConfig.uniform(**base)
    low = ArchConfig.uniform(**base, rank=LayerRanks(fc1=16, fc2=16))
    per_layer_saving = 2 * (64 * 128 - 16 * (64 + 128))
    assert full.num_params() - low.num_params() == 2 * per_layer_saving


@pytest.mark.parametrize(
    "change, message",
    [
        ({"patch_size": 5}, "not a multiple of patch_size"),
        ({"num_heads": (3,)}, "not divisible by 3 heads"),
        ({"mlp_ratios": (1.01,)}, "not a whole width"),
        ({"ranks": (LayerRanks(fc1=64),)}, "saves nothing"),
        ({"ranks": (LayerRanks(qkv=0),)}, "positive integer"),
        ({"num_heads": (4, 4)}, "depth is 1"),
        ({"pool": "max"}, "pool must be"),
        ({"embed_dim": 0}, "embed_dim must be a positive integer"),
    ],
)
def test_invalid_configs_fail_with_a_clear_message(change, message):
    base = dict(image_size=32, channels=3, patch_size=4, embed_dim=64, depth=1, num_heads=(4,),
                mlp_ratios=(2.0,), ranks=(LayerRanks(),), num_classes=10)  # fmt: skip
    base.update(change)
    with pytest.raises(ArchError, match=message):
        ArchConfig(**base)


def test_from_dict_accepts_scalars_and_full_rank_and_reports_missing_fields(tmp_path):
    data = {"image_size": 28, "channels": 1, "patch_size": 7, "embed_dim": 32, "depth": 2, "num_heads": 2,
            "mlp_ratios": 2, "ranks": {"qkv": 8, "fc1": "full"}, "num_classes": 10}  # fmt: skip
    arch = ArchConfig.from_dict(data)
    assert arch.num_heads == (2, 2) and arch.ranks[1].qkv == 8 and arch.ranks[1].fc1 is None
    del data["embed_dim"]
    with pytest.raises(ArchError, match="embed_dim"):
        ArchConfig.from_dict(data)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ArchError, match="cannot read"):
        load_arch(bad)
    with pytest.raises(ArchError, match="presets"):
        load_arch("no-such-preset")
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(ArchError, match="JSON object"):
        load_arch(bad)
