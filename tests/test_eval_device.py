"""`mcuformer eval` on the emulated Cortex-M7, the PlatformIO project, and `flash`'s guard for emulated boards."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mcuformer.boards import load_board
from mcuformer.cli import main
from mcuformer.codegen.compiler import compile_model
from mcuformer.data import load_dataset
from mcuformer.device.build import build_firmware
from mcuformer.device.platformio import write_build_project
from mcuformer.device.qemu import qemu_session
from mcuformer.evaluate import evaluate_build, firmware_digest, resume_key
from mcuformer.quant import reference


@pytest.fixture(scope="module")
def qemu_build(micro_run, tmp_path_factory):
    run, _ = micro_run
    compiled = compile_model(run / "model.pt", "stm32f746", tmp_path_factory.mktemp("qemu") / "micro")
    write_build_project(compiled.out_dir, "stm32f746")  # what `mcuformer compile` writes beside the C
    return compiled


def test_eval_on_qemu_is_exact_reports_latency_and_measured_memory(qemu_build):
    result = evaluate_build(qemu_build.out_dir, "qemu-m7", limit=30)
    assert result.images == 30 and result.logits_exact == 1.0
    assert result.device_accuracy == result.int8_accuracy
    assert result.counter == "instructions" and result.mean_count > 10_000
    m = result.memory
    assert m is not None
    assert m.measured_arena == m.predicted_arena == qemu_build.plan.arena_bytes
    assert m.stack_high_water > 0 and m.measured_sram <= m.predicted_sram
    assert m.measured_flash <= m.predicted_flash <= 1.5 * m.measured_flash
    saved = json.loads((qemu_build.out_dir / "eval_qemu-m7.json").read_text())
    assert saved["logits_exact"] == 1.0 and saved["memory"]["measured_arena"] == m.measured_arena


def test_interrupted_eval_resumes_from_its_checkpoint(qemu_build):
    build = qemu_build.out_dir
    manifest = json.loads((build / "mcuformer.json").read_text())
    images = load_dataset("fashion-mnist", "test").images[:30]
    expected = reference.predict(qemu_build.qmodel, images)
    # A run stopped after 25 images left its logits behind; the resumed run must only do the last 5.
    partial = build / "eval_qemu-m7.partial.npz"
    logits = np.zeros_like(expected)
    logits[:25] = expected[:25]
    firmware = build_firmware(build, load_board("qemu-m7"))
    key = f"{resume_key(manifest['model_hash'], reference.quantize_pixels(images))}:{firmware_digest(firmware.elf)}"
    np.savez(partial, key=key, logits=logits, counts=np.full(30, 7), done=25)
    result = evaluate_build(build, "qemu-m7", limit=30)
    assert result.logits_exact == 1.0 and not partial.exists()
    assert result.mean_count != 7  # the last five counts come from the device


def test_eval_does_not_resume_logits_of_another_firmware(qemu_build):
    build = qemu_build.out_dir
    manifest = json.loads((build / "mcuformer.json").read_text())
    partial = build / "eval_qemu-m7.partial.npz"
    wrong = np.zeros((30, manifest["num_classes"]), np.int8)  # what a since-changed firmware "computed"
    images = reference.quantize_pixels(load_dataset("fashion-mnist", "test").images[:30])
    key = f"{resume_key(manifest['model_hash'], images)}:{'0' * 16}"
    np.savez(partial, key=key, logits=wrong, counts=np.full(30, 7), done=25)
    result = evaluate_build(build, "qemu-m7", limit=30)
    assert result.logits_exact == 1.0 and result.mean_count > 10_000  # all 30 images ran on the device


def test_platformio_project_builds_offline_for_the_emulator_and_runs(qemu_build):
    project = qemu_build.out_dir / "platformio"
    ini = (project / "platformio.ini").read_text()
    assert "[env:stm32f746]" in ini and "platform = ststm32" in ini and "board = disco_f746ng" in ini
    assert "[env:qemu-m7]" in ini and "symlink://" in ini
    # Exactly what a user types in the project folder: no environment prepared by mcuformer, no network.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORMIO")}
    pio = Path(sys.executable).with_name("pio")
    build = subprocess.run([str(pio), "run", "-e", "qemu-m7"], cwd=project, env=env, capture_output=True, text=True)
    assert build.returncode == 0, (build.stdout + build.stderr)[-3000:]
    elf = project / ".pio" / "build" / "qemu-m7" / "firmware.elf"
    images = reference.quantize_pixels(load_dataset("fashion-mnist", "test").images[:5])
    expected = reference.predict(qemu_build.qmodel, load_dataset("fashion-mnist", "test").images[:5])
    with qemu_session(elf, "qemu-m7") as session:
        manifest = json.loads((qemu_build.out_dir / "mcuformer.json").read_text())
        assert session.link.info is not None and session.link.info.model_hash == manifest["model_hash"]
        got = np.stack([np.frombuffer(session.link.infer(img).logits, np.int8) for img in images])
    assert np.array_equal(got, expected)


def test_flash_refuses_emulated_boards(qemu_build, capsys):
    assert main(["flash", str(qemu_build.out_dir), "--board", "qemu-m7"]) == 2
    assert "nothing to flash" in capsys.readouterr().err


def test_profile_reports_every_op_of_the_last_inference(qemu_build):
    from mcuformer.device.build import build_firmware

    firmware = build_firmware(qemu_build.out_dir, "qemu-m7")
    image = reference.quantize_pixels(load_dataset("fashion-mnist", "test").images[:1])[0]
    with qemu_session(firmware.elf, "qemu-m7") as session:
        total = session.link.infer(image).count
        profile = session.link.profile()
    assert len(profile.op_counts) == len(qemu_build.graph.ops)
    assert all(count > 0 for count in profile.op_counts)
    assert 0.9 * total <= sum(profile.op_counts) <= total + 40 * len(profile.op_counts)
    kinds = {op.kind: 0 for op in qemu_build.graph.ops}
    for op, count in zip(qemu_build.graph.ops, profile.op_counts, strict=True):
        kinds[op.kind] += count
    hot_spots = ("linear", "attention", "attention_block", "attention_block_heads", "attention_block_heads_once")
    assert max(kinds, key=kinds.__getitem__) in hot_spots  # a ViT's hot spot
