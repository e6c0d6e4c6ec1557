"""Runs images through a connected device after checking that it runs this build (`mcuformer.evaluate` adds
progress, resume and the accuracy report on top)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcuformer.boards import Board, load_board
from mcuformer.device.build import Firmware, build_firmware
from mcuformer.device.errors import DeviceError
from mcuformer.device.protocol import HelloInfo, MemoryInfo
from mcuformer.device.qemu import SESSION_TIMEOUT_S, qemu_session
from mcuformer.device.serial_link import DeviceLink, open_serial


@dataclass(frozen=True)
class DeviceRun:
    logits: np.ndarray  # int8 [N, classes]
    counts: list[int]  # cycles or instructions per image (hello.counter_kind)
    hello: HelloInfo
    memory: MemoryInfo
    seconds_per_image: float  # wall time of one INFER round trip (upload + run + reply)


@contextlib.contextmanager
def device_session(
    build: str | Path,
    board: str | Board,
    port: str | None = None,
    *,
    kernels: str | None = None,
    session_timeout: float = SESSION_TIMEOUT_S,
) -> Iterator[tuple[DeviceLink, Firmware | None]]:
    """A handshaken link to the build's firmware and the firmware itself: the board at `port` (flashed already;
    firmware None), or QEMU running the firmware built here. Always released."""
    if port is not None:
        link = open_serial(port)
        try:
            link.hello()
            yield link, None
        finally:
            link.close()
        return
    board = load_board(board)
    if board.qemu is None:
        raise DeviceError(f"board {board.name} is not emulated: pass --port with the board's serial port")
    firmware = build_firmware(build, board, kernel_variant=kernels)
    with qemu_session(firmware.elf, board, session_timeout=session_timeout) as session:
        yield session.link, firmware


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
    return DeviceRun(logits, counts, hello, link.memory(), seconds)
