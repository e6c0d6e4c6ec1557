"""Runs images through a connected device after checking that it runs this build (`mcuformer.evaluate` adds
progress, resume and the accuracy report on top)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mcuformer.device.errors import DeviceError
from mcuformer.device.link import DeviceLink
from mcuformer.device.protocol import HelloInfo, MemoryInfo


@dataclass(frozen=True)
class DeviceRun:
    logits: np.ndarray  # int8 [N, classes]
    counts: list[int]  # cycles or instructions per image (hello.counter_kind)
    hello: HelloInfo
    memory: MemoryInfo
    seconds_per_image: float  # wall time of one INFER round trip (upload + run + reply)


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
