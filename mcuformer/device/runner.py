"""Runs a compiled build on a device end to end: build the firmware, start QEMU (or open a serial port), check the
model hash, infer every image, read the memory report. What `mcuformer eval --board qemu-m7` needs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcuformer.device.build import Firmware, build_firmware, read_manifest
from mcuformer.device.errors import DeviceError
from mcuformer.device.link import DeviceLink, open_serial
from mcuformer.device.protocol import HelloInfo, MemoryInfo
from mcuformer.device.qemu import Transport, qemu_session


@dataclass(frozen=True)
class DeviceRun:
    logits: np.ndarray  # int8 [N, classes]
    counts: list[int]  # cycles or instructions per image (hello.counter_kind)
    hello: HelloInfo
    memory: MemoryInfo
    seconds_per_image: float  # wall time of one INFER round trip (upload + run + reply)
    firmware: Firmware | None


def check_hello(hello: HelloInfo, manifest: dict, where: str) -> None:
    if hello.model_hash != manifest["model_hash"]:
        raise DeviceError(f"{where} runs model {hello.model_name!r} ({hello.model_hash}), not this build "
                          f"({manifest['model_hash']}): flash the build first")  # fmt: skip


def run_images(link: DeviceLink, images: np.ndarray, manifest: dict) -> DeviceRun:
    """int8 images [N, H, W, C] (pixel - 128) through a connected device."""
    hello = link.info or link.hello()
    check_hello(hello, manifest, link.name)
    start = time.perf_counter()
    logits, counts = link.infer_many(images)
    seconds = (time.perf_counter() - start) / max(len(images), 1)
    return DeviceRun(logits, counts, hello, link.memory(), seconds, None)


def run_on_qemu(build_dir: str | Path, images: np.ndarray, board: str = "qemu-m7",
                transport: Transport = "tcp") -> DeviceRun:  # fmt: skip
    """Builds build_dir's firmware for an emulated board and runs int8 `images` on it under QEMU."""
    firmware = build_firmware(build_dir, board)
    with qemu_session(firmware.elf, firmware.board, transport=transport) as session:
        run = run_images(session.link, images, firmware.manifest)
    return DeviceRun(run.logits, run.counts, run.hello, run.memory, run.seconds_per_image, firmware)


def run_on_serial(build_dir: str | Path, images: np.ndarray, port: str, baud: int = 115_200) -> DeviceRun:
    """Runs int8 `images` on a board flashed with build_dir's firmware, connected at `port`."""
    link = open_serial(port, baud)
    try:
        return run_images(link, images, read_manifest(Path(build_dir)))
    finally:
        link.close()
