"""Bad input gets one line on stderr that names the problem, exit code 2, never a traceback; data and settings are
checked, not trusted (ImageFolder class names, resume keys)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mcuformer.arch import PRESETS
from mcuformer.cli import main
from mcuformer.errors import McuformerError
from mcuformer.search.cost import Constraints
from mcuformer.search.report import write_json
from mcuformer.search.run import RUN_KEY, SearchConfig, prepare, run_key
from mcuformer.train import load_for_arch


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own exits
        code = stop.code if isinstance(stop.code, int) else 1
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad")
    binary = root / "arch.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    corrupt = root / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip" + bytes(100))
    a_file = root / "a_file"
    a_file.write_text("not a folder")
    return {"binary": binary, "corrupt": corrupt, "file": a_file, "root": root}


CASES = {
    "eval -n 0": (["eval", "{root}", "-n", "0"], "argument -n: must be at least 1, got 0"),
    "eval -n -3": (["eval", "{root}", "-n", "-3"], "argument -n: must be at least 1, got -3"),
    "eval -n x": (["eval", "{root}", "-n", "x"], "expected a whole number >= 1, got 'x'"),
    "train --epochs 0": (["train", "--arch", "micro", "--epochs", "0"], "argument --epochs: must be at least 1"),
    "train --train-limit 0": (["train", "--arch", "micro", "--train-limit", "0"], "--train-limit: must be at least 1"),
    "train --lr -1": (["train", "--arch", "micro", "--lr", "-1"], "argument --lr: must be a finite number > 0"),
    "train --arch binary": (["train", "--arch", "{binary}"], "is not text: pass a preset name or a JSON file"),
    "compile --calib-images 0": (["compile", "m.onnx", "--calib-images", "0"], "--calib-images: must be at least 1"),
    "compile corrupt .pt": (["compile", "{corrupt}", "-o", "{root}/b"], "is corrupt or not a PyTorch file"),
    "compile -o file": (["compile", "{corrupt}", "-o", "{file}"], "is a file; the build goes into a folder"),
    "plan --sram beyond the board": (
        ["plan", "micro", "--sram", "400KB", "--plot", "{root}/p.png"],
        "budgets of 409,600 B SRAM and 1,048,576 B flash exceed the stm32f746's",
    ),
    "plan --flash x": (["plan", "micro", "--flash", "lots"], "lots"),
    "search --cutmix 2": (["search", "--cutmix", "2"], "argument --cutmix: must lie in [0, 1], got 2"),
    "search --max-instructions 0": (
        ["search", "--max-instructions", "0"],
        "argument --max-instructions: must be at least 1",
    ),
    "search --latency 5": (
        ["search", "--latency", "5"],
        "argument --latency: cannot read the latency '5'; write it like 10ms",
    ),
    "demo --device-images 0": (["demo", "--device-images", "0"], "--device-images: must be at least 1"),
    "eval missing build": (["eval", "{root}/nothing"], "nothing"),
    "eval --board host": (["eval", "{root}", "--board", "host"], "`host` is not a board: leave out --board"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_code_2(case, files, capsys):
    argv, message = CASES[case]
    code, err = _run([a.format(**files) for a in argv], capsys)
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert message.format(**files) in err, err


def _folder(root: Path, classes: list[str]) -> Path:
    for i, name in enumerate(classes):
        (root / "test" / name).mkdir(parents=True)
        for j in range(2):
            Image.fromarray(np.full((28, 28), 40 * i + j, np.uint8)).save(root / "test" / name / f"{j}.png")
    return root


def test_an_image_folder_with_other_class_names_is_refused(tmp_path):
    """The same images under renamed folders would sort into other labels: the model's class names decide."""
    arch = replace(PRESETS["micro"], num_classes=2)
    data = load_for_arch("imagefolder", "test", arch, _folder(tmp_path / "a", ["boot", "shirt"]), ("boot", "shirt"))
    assert data.classes == ("boot", "shirt")
    renamed = _folder(tmp_path / "b", ["a_boot", "shirt"])
    with pytest.raises(McuformerError, match=r"the model's classes \['boot', 'shirt'\] differ from .*'a_boot'"):
        load_for_arch("imagefolder", "test", arch, renamed, ("boot", "shirt"))


def test_search_resume_with_other_settings_is_refused_naming_them(tmp_path, capsys):
    """A 320 KB run resumed with --budget 200KB would silently continue with the old settings."""
    config = SearchConfig(out=tmp_path, sram_budget="320KB")
    space, constraints, _ = prepare(config)
    write_json(tmp_path / RUN_KEY, run_key(config, space, constraints))
    code, err = _run(["search", "--budget", "200KB", "--resume", "--out", str(tmp_path)], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert "was started with other settings (sram_budget: 327680 then, 204800 now)" in err, err
    assert Constraints.for_board("stm32f746", "200KB").sram_budget == 204_800
