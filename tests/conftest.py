"""Shared fixtures: one tiny model trained on real Fashion-MNIST, reused by the compiler tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcuformer.arch import PRESETS
from mcuformer.checkpoint import ModelFile
from mcuformer.train import TrainConfig, train

TINY_TRAIN = TrainConfig(epochs=2, batch_size=64, lr=5e-3, warmup_epochs=0.2, train_limit=4096, calibration_images=256)


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ModelFile]:
    """The `micro` preset trained for one short epoch: (run folder, model file)."""
    out = tmp_path_factory.mktemp("micro_run")
    return out, train(PRESETS["micro"], "fashion-mnist", out, TINY_TRAIN)
