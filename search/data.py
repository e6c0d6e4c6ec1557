"""The search's data: a training split, a held-out validation split carved from the training set (the search's
fitness: the test set is only used to report the winner), and batches at any input resolution of the space."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mcuformer.data import ImageSet, load_dataset, split_validation


@dataclass
class SearchData:
    name: str
    train: ImageSet
    val: ImageSet
    test: ImageSet
    _resized: dict[tuple[str, int], ImageSet] = field(default_factory=dict, repr=False)

    @classmethod
    def load(
        cls,
        name: str,
        data_dir: str | Path | None,
        val_size: int,
        train_limit: int | None,
        seed: int,
        test_limit: int | None = None,
    ) -> SearchData:
        train, val = split_validation(load_dataset(name, "train", data_dir), val_size, seed, train_limit)
        test = load_dataset(name, "test", data_dir)
        if test_limit is not None:
            test = test.subset(np.arange(min(test_limit, len(test))))
        return cls(name, train, val, test)

    @property
    def mean(self) -> tuple[float, ...]:
        return self.train.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.train.std

    def at(self, split: str, size: int) -> ImageSet:
        """A split at size x size pixels, resized as deployment resizes (`ImageSet.resized`), cached."""
        key = (split, size)
        if key not in self._resized:
            self._resized[key] = getattr(self, split).resized((size, size))
        return self._resized[key]


def resize_batch(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """Float NCHW pixels to size x size during training (bilinear, antialiased like `resize_images`)."""
    if pixels.shape[-1] == size and pixels.shape[-2] == size:
        return pixels
    return F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
