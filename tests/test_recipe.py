"""The shared training recipe: batch augmentation with soft targets, and the learning-rate schedule."""

from __future__ import annotations

import pytest
import torch

from mcuformer.recipe import Augment, flip_and_crop, lr_at, mixup, random_erasing


def _batch(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 28, 28, generator=generator), torch.randint(0, 10, (n,), generator=generator)


def test_flip_and_crop_keeps_shape_and_pixels_and_is_seeded() -> None:
    batch, _ = _batch(8)
    a = flip_and_crop(batch, 2, True, torch.Generator().manual_seed(1))
    b = flip_and_crop(batch, 2, True, torch.Generator().manual_seed(1))
    assert a.shape == batch.shape and torch.equal(a, b)
    assert not torch.equal(a, batch)
    assert torch.equal(flip_and_crop(batch, 0, False, torch.Generator()), batch)
    # a crop moves pixels, it does not invent them: every output pixel is an input pixel or padding
    shifted = flip_and_crop(batch, 3, False, torch.Generator().manual_seed(2))
    for image, out in zip(batch, shifted, strict=True):
        assert torch.isin(out[out != 0], image).all()


def test_random_erasing_boxes_are_rectangles_within_the_area_range() -> None:
    batch = torch.zeros(64, 1, 28, 28)
    erased = random_erasing(batch, 1.0, torch.Generator().manual_seed(3))
    for image in erased[:, 0]:
        rows, cols = torch.nonzero(image, as_tuple=True)
        height, width = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert len(rows) == height * width  # one filled box (noise is non-zero almost surely)
        assert 0.01 * 784 <= height * width <= 0.3 * 784
    untouched = random_erasing(batch, 0.0, torch.Generator().manual_seed(3))
    assert torch.equal(untouched, batch)
    half = random_erasing(batch, 0.5, torch.Generator().manual_seed(4))
    share = float((half.flatten(1).abs().sum(1) > 0).float().mean())
    assert 0.3 < share < 0.7


def test_mixup_blends_images_and_targets_alike() -> None:
    pixels, labels = _batch()
    targets = torch.nn.functional.one_hot(labels, 10).float()
    mixed, soft = mixup(pixels, targets, torch.Generator().manual_seed(5))
    torch.testing.assert_close(soft.sum(1), torch.ones(len(soft)))
    # the kept share of each image equals the weight of its own label (when the partner's label differs)
    lam = soft[torch.arange(len(labels)), labels]
    assert torch.all((lam > 0) & (lam <= 1))
    assert not torch.equal(mixed, pixels)


def test_augment_is_seeded_and_targets_are_distributions() -> None:
    pixels, labels = _batch()
    recipe = Augment(hflip=True, crop_pad=2, erasing=0.5, cutmix=0.5, mixup=0.5, label_smoothing=0.1)
    for seed in range(6):
        a = recipe(pixels, labels, 10, torch.Generator().manual_seed(seed))
        b = recipe(pixels, labels, 10, torch.Generator().manual_seed(seed))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        torch.testing.assert_close(a[1].sum(1), torch.ones(len(labels)))
        assert a[1].min() >= 0.01 - 1e-6  # label smoothing: every class keeps 0.1 / 10
    plain_pixels, plain_targets = Augment(hflip=False, label_smoothing=0.0)(pixels, labels, 10, torch.Generator())
    assert torch.equal(plain_pixels, pixels) and torch.equal(plain_targets.argmax(1), labels)


def test_augment_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="erasing"):
        Augment(erasing=1.5)
    with pytest.raises(ValueError, match="crop_pad"):
        Augment(crop_pad=-1)


def test_learning_rate_warms_up_then_decays_to_zero() -> None:
    rates = [lr_at(step, 100, 10, 1.0) for step in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:], strict=False))
    assert rates[-1] < 0.001
