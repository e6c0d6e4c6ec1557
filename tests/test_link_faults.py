"""The serial eval over a link that damages bytes (mcuformer.device.faults between the host and QEMU): every fault
kind once, a few images each. Whatever the link does, the eval ends bit-exact or fails naming the image.

The long version (1,000 images at 1e-4 flips and drops, ...) is benchmarks/serial_faults.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mcuformer.codegen.compiler import CompiledModel, compile_model
from mcuformer.device.build import Firmware, build_firmware
from mcuformer.device.faults import FaultProxy, Faults
from mcuformer.device.qemu import qemu_session
from mcuformer.errors import McuformerError
from mcuformer.evaluate import evaluate_build

IMAGES = 8
FRAME = 9 + 28 * 28 + 4  # an INFER frame of the micro model
HELLO = 9 + 4

SCENARIOS: dict[str, dict[str, Any]] = {
    "flips": dict(to_device=Faults(flip=2e-3), to_host=Faults(flip=1e-2)),
    "drops": dict(to_device=Faults(drop=1e-3), to_host=Faults(drop=1e-2)),
    "duplicates": dict(to_device=Faults(duplicate=1e-3), to_host=Faults(duplicate=1e-2)),
    "garbage": dict(to_device=Faults(garbage=3e-4), to_host=Faults(garbage=5e-3)),
    "delays": dict(to_device=Faults(delay=0.2, delay_s=0.4), to_host=Faults(delay=0.2, delay_s=0.4)),
    # A reset in the middle of the third image's frame, and one just after the sixth frame (while it computes).
    "restarts": dict(restart_at=(HELLO + 2 * FRAME + 400, HELLO + 6 * FRAME)),
}


@pytest.fixture(scope="module")
def compiled(micro_run, tmp_path_factory) -> CompiledModel:
    run, _ = micro_run
    return compile_model(run / "model.pt", "qemu-m7", tmp_path_factory.mktemp("faults") / "micro", name="micro")


@pytest.fixture(scope="module")
def firmware(compiled) -> Firmware:
    return build_firmware(compiled.out_dir)


@contextlib.contextmanager
def lossy_link(firmware: Firmware, **settings: Any) -> Iterator[FaultProxy]:
    """QEMU running the firmware, with a fault proxy in front of its serial port (seeded: the same faults each run)."""
    with (
        qemu_session(firmware.elf, hello=False, monitor=True) as session,
        FaultProxy(session.link.port, seed=3, restart=session.reset, **settings) as proxy,
    ):
        yield proxy


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_eval_survives_a_lossy_link_bit_exact(compiled, firmware, scenario):
    with lossy_link(firmware, **SCENARIOS[scenario]) as proxy:
        result = evaluate_build(compiled.out_dir, port=proxy.url, limit=IMAGES)
        counts = proxy.counts
    injected = sum(c.injected for c in counts.values())
    assert injected > 0, f"{scenario}: the proxy injected nothing, so nothing was tested"
    assert result.images == IMAGES and result.logits_exact == 1.0
    assert result.link is not None
    if scenario == "restarts":
        assert result.link["restarts"] >= 1
    elif scenario != "delays":
        assert result.link["retries"] + result.link["noise_bytes"] + result.link["bad_frames"] > 0


def test_a_link_too_bad_to_use_fails_naming_the_image_never_a_wrong_number(compiled, firmware):
    failure = pytest.raises(McuformerError, match=r"test image 0: INFER to .* failed after 25 attempts")
    with lossy_link(firmware, to_device=Faults(flip=0.02)) as proxy, failure:
        evaluate_build(compiled.out_dir, port=proxy.url, limit=IMAGES)
    assert not (compiled.out_dir / "eval_host.partial.npz").exists()  # nothing answered, nothing kept


def test_qemu_dies_with_the_eval_and_a_killed_eval_resumes(compiled, firmware, tmp_path):
    """kill -9 of `mcuformer eval --board qemu-m7` leaves no QEMU behind; the rerun resumes and ends bit-exact."""
    build = compiled.out_dir
    command = [sys.executable, "-m", "mcuformer", "eval", str(build), "--board", "qemu-m7", "-n", "300"]
    partial = build / "eval_qemu-m7.partial.npz"
    partial.unlink(missing_ok=True)
    eval_run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not partial.exists() and time.monotonic() < deadline and eval_run.poll() is None:
        time.sleep(0.1)
    assert partial.exists(), "the eval saved no checkpoint within 2 minutes"
    qemu = _children(eval_run.pid)
    assert qemu, "the eval runs no QEMU"
    os.kill(eval_run.pid, signal.SIGKILL)
    eval_run.wait()
    time.sleep(1.0)
    assert not [pid for pid in qemu if _alive(pid)], "QEMU outlived the eval that started it"
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resuming the qemu-m7 eval at image" in rerun.stdout + rerun.stderr
    assert "logits equal to the reference on 100.00% of images" in rerun.stdout


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
