import dataclasses

import pytest
import torch

from mcuformer.arch import PRESETS
from mcuformer.checkpoint import ModelFileError, load_model, save_model
from mcuformer.train import TrainConfig, train

SMALL = TrainConfig(epochs=2, batch_size=64, train_limit=256, calibration_images=64)


def test_model_file_is_self_describing_and_round_trips(micro_run, tmp_path):
    run, trained = micro_run
    loaded = load_model(run / "model.pt")
    assert loaded.arch == PRESETS["micro"]
    assert loaded.dataset.name == "fashion-mnist" and len(loaded.dataset.classes) == 10
    assert 0.0 < loaded.metrics["fp32_accuracy"] <= 1.0
    assert set(loaded.calibration) >= {"patch_embed", "embed", "blocks.0.attn.scores", "logits"}
    pixels = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(loaded.model(pixels), trained.model(pixels))
    save_model(loaded, tmp_path / "again.pt")
    assert load_model(tmp_path / "again.pt").calibration == loaded.calibration


def test_corrupt_foreign_and_missing_files_fail_clearly(micro_run, tmp_path):
    run, _ = micro_run
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((run / "model.pt").read_bytes()[:500])
    with pytest.raises(ModelFileError, match="corrupt or not a PyTorch file"):
        load_model(truncated)
    foreign = tmp_path / "state_dict.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), foreign)
    with pytest.raises(ModelFileError, match="not an mcuformer model file"):
        load_model(foreign)
    data = torch.load(run / "model.pt", weights_only=True)
    data["format_version"] = 99
    torch.save(data, tmp_path / "future.pt")
    with pytest.raises(ModelFileError, match="format version 99"):
        load_model(tmp_path / "future.pt")
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "nope.pt")


def test_resume_continues_exactly_where_training_stopped(tmp_path):
    straight = train(PRESETS["micro"], "fashion-mnist", tmp_path / "straight", SMALL)
    interrupted = tmp_path / "interrupted"
    train(PRESETS["micro"], "fashion-mnist", interrupted, dataclasses.replace(SMALL, epochs=1))
    assert torch.load(interrupted / "checkpoint.pt", weights_only=False)["epoch"] == 1
    resumed = train(PRESETS["micro"], "fashion-mnist", interrupted, SMALL)
    assert torch.load(interrupted / "checkpoint.pt", weights_only=False)["epoch"] == 2
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_resume_refuses_other_settings(tmp_path):
    from mcuformer.errors import McuformerError

    train(PRESETS["micro"], "fashion-mnist", tmp_path, dataclasses.replace(SMALL, epochs=1))
    with pytest.raises(McuformerError, match=r"with other settings \(config\)"):
        train(PRESETS["micro"], "fashion-mnist", tmp_path, dataclasses.replace(SMALL, lr=1e-4))
