"""kill -9 of a search in each stage (supernet, evolution, finetune, quantization-aware finetune), then a rerun:
the same model.pt, bit for bit, as a search that was never interrupted (tiny space, a few epochs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mcuformer.checkpoint import load_model

SPACE = """[quick]
image_sizes = [14, 28]
patch_sizes = [7, 14]
embed_dims = [16, 32]
depths = [1, 2]
num_heads = [1, 2]
mlp_ratios = [1.0, 2.0]
ranks = [8, "full"]
"""
OVERRIDES = {"supernet.epochs": 3, "supernet.batch_size": 64, "train_limit": 1024, "val_size": 200,
             "test_limit": 200, "evolution.population": 4, "evolution.generations": 2, "evolution.parents": 2,
             "finetune.epochs": 3, "finetune.calibration_images": 64, "finetune.qat_epochs": 2}  # fmt: skip
SCRIPT = """
import json, sys
from pathlib import Path
from mcuformer.search.run import SearchConfig, run_search
out, space, overrides = sys.argv[1:]
run_search(SearchConfig(out=Path(out), sram_budget="5700", space_file=space, overrides=json.loads(overrides)),
           resume=True)
"""
# Files that show a stage has started (the kill lands in it or, on a fast machine, a little later).
STAGES = {"supernet": "supernet.pt", "evolution": "fitness_cache.json", "finetune": "finetune.pt", "qat": "qat.pt"}


def _search(out: Path, space: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", SCRIPT, str(out), str(space), json.dumps(OVERRIDES)]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish(out: Path, space: Path) -> None:
    run = _search(out, space)
    _, err = run.communicate(timeout=600)
    assert run.returncode == 0, err.decode()[-2000:]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("kill")
    space = root / "tiny.toml"
    space.write_text(SPACE)
    _finish(root / "reference", space)
    return root / "reference", space


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_search_killed_in_any_stage_resumes_to_the_same_model(stage, uninterrupted, tmp_path):
    reference, space = uninterrupted
    out = tmp_path / "run"
    run = _search(out, space)
    deadline = time.monotonic() + 300
    while not (out / STAGES[stage]).exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert run.poll() is None, f"the search ended before its {stage} stage could be interrupted"
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    assert not (out / "model.pt").exists()
    _finish(out, space)
    want, got = load_model(reference / "model.pt"), load_model(out / "model.pt")
    assert got.arch == want.arch and got.calibration == want.calibration
    for (name, a), b in zip(want.model.state_dict().items(), got.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    final = [json.loads((d / "search.json").read_text())["final"] for d in (reference, out)]
    assert final[0] == final[1]
