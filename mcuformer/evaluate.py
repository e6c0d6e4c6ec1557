"""Accuracy of a compiled build on a target: fp32 (PyTorch), int8 reference (numpy) and the device, side by side.

Targets: `host` (the generated C built with gcc), an emulated board (`qemu-m7`: firmware under QEMU, over the
emulated serial port) or a real board on a serial port. Device runs checkpoint their logits, so an interrupted
eval resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from mcuformer.boards import load_board
from mcuformer.checkpoint import load_model
from mcuformer.codegen.build_dir import BuildDir, read_manifest
from mcuformer.codegen.compiler import build_graph
from mcuformer.codegen.cost_model import load_cost_model
from mcuformer.codegen.emit import model_hash
from mcuformer.codegen.hostrun import build_host_runner, run_host
from mcuformer.codegen.ir import Graph
from mcuformer.data import pixels_to_tensor
from mcuformer.device.errors import DeviceError
from mcuformer.errors import McuformerError
from mcuformer.progress import progress
from mcuformer.quant import reference
from mcuformer.train import load_for_arch

HOST = "host"
CHECKPOINT_SECONDS = 2.0  # a device run's logits are saved at least this often (and when it stops on an error)
SECONDS_PER_IMAGE_BOUND = 2.0  # generous QEMU bound for the session watchdog


@dataclass(frozen=True)
class MeasuredMemory:
    """What the firmware really uses next to the compiler's prediction (bytes)."""

    predicted_arena: int
    measured_arena: int  # the firmware's .arena section, reported over serial
    predicted_sram: int  # arena + stack reserve + runtime statics (the compiler's budget check)
    measured_sram: int  # arena + stack high-water + .data/.bss, measured on the device
    stack_high_water: int
    static_bytes: int
    predicted_flash: int
    measured_flash: int  # from the ELF: .text + .rodata + .data load image


@dataclass(frozen=True)
class EvalResult:
    target: str
    dataset: str
    images: int
    fp32_accuracy: float
    int8_accuracy: float
    device_accuracy: float
    top1_agreement_fp32_int8: float
    logits_exact: float  # fraction of images whose device logits equal the reference bit for bit
    counter: str  # "instructions" (QEMU -icount), "cycles" (DWT on a real board) or "" (host)
    mean_count: float
    seconds_per_image: float
    memory: MeasuredMemory | None
    link: dict[str, int] | None = None  # the serial link's counters (LinkStats): retries, timeouts, restarts...
    predicted_instructions: int | None = None  # the cost model's prediction for the device's kernels

    def table(self) -> str:
        lines = [
            f"{self.images} {self.dataset} test images on {self.target}:",
            f"  fp32 (PyTorch)          {100 * self.fp32_accuracy:6.2f}%",
            f"  int8 reference (numpy)  {100 * self.int8_accuracy:6.2f}%   top-1 agreement with fp32 "
            f"{100 * self.top1_agreement_fp32_int8:.2f}%",
            f"  int8 {self.target:<18} {100 * self.device_accuracy:6.2f}%   logits equal to the reference on "
            f"{100 * self.logits_exact:.2f}% of images",
        ]
        if self.counter:
            lines.append(f"  latency: {self.mean_count:,.0f} {self.counter} per inference (mean); "
                         f"{1000 * self.seconds_per_image:.1f} ms per image round trip")  # fmt: skip
        if self.predicted_instructions and self.counter == "instructions":
            error = self.predicted_instructions / self.mean_count - 1
            lines.append(f"  cost model: {self.predicted_instructions:,} instructions predicted ({100 * error:+.1f}%)")
        if self.link and (self.link["retries"] or self.link["restarts"]):
            k = self.link
            lines.append(f"  link: {k['retries']} resends ({k['timeouts']} after timeouts), {k['restarts']} device "
                         f"restarts, {k['bad_frames']} corrupt frames, {k['noise_bytes']} noise bytes")  # fmt: skip
        m = self.memory
        if m is not None:
            lines += [
                f"  SRAM  predicted {m.predicted_sram:>9,} B | measured {m.measured_sram:>9,} B (arena "
                f"{m.measured_arena:,} [plan {m.predicted_arena:,}] + stack high-water {m.stack_high_water:,} + "
                f"statics {m.static_bytes:,})",
                f"  flash predicted {m.predicted_flash:>9,} B | measured {m.measured_flash:>9,} B (ELF)",
            ]
        return "\n".join(lines)


def _predicted_instructions(graph: Graph, target: str, port: str | None) -> int | None:
    """What the cost model predicts for the kernels the device runs (None for a board without one)."""
    board = load_board(target)
    if port is not None and board.is_emulated:
        return None
    model = load_cost_model(board.kernels)
    return model.instructions(graph) if model.covers(graph) else None


def firmware_digest(elf: Path) -> str:
    """Names the firmware an eval checkpoint belongs to (its ELF's SHA-256, 16 hex digits)."""
    return hashlib.sha256(elf.read_bytes()).hexdigest()[:16]


def resume_key(model_hash: str, int8_images: np.ndarray) -> str:
    """What determines a device run's logits: the model and the exact images (not their folder's name or count:
    the same count from another --data-dir must not reuse them). The firmware's digest is added on QEMU."""
    return f"{model_hash}:{hashlib.sha256(int8_images.tobytes()).hexdigest()[:16]}"


def _save_partial(path: Path, key: str, logits: np.ndarray, counts: np.ndarray, done: int) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, key=key, logits=logits, counts=counts, done=done)
    os.replace(tmp, path)


def _load_partial(path: Path, key: str, n: int, classes: int) -> tuple[np.ndarray, np.ndarray, int]:
    if path.is_file():
        with np.load(path) as data:
            if str(data["key"]) == key and data["logits"].shape == (n, classes):
                return data["logits"].copy(), data["counts"].copy(), int(data["done"])
    return np.zeros((n, classes), np.int8), np.zeros(n, np.int64), 0


def _run_device(
    build: Path, target: str, port: str | None, images: np.ndarray, manifest: dict[str, Any], key: str
) -> tuple[np.ndarray, np.ndarray, float, str, MeasuredMemory | None, dict[str, int]]:
    from mcuformer.device.runner import check_hello, device_session

    classes = manifest["num_classes"]
    partial = build / f"eval_{target}.partial.npz"
    timeout = 120.0 + SECONDS_PER_IMAGE_BOUND * len(images)
    with device_session(build, target, port, session_timeout=timeout) as (link, firmware):
        if firmware is not None:  # logits of another firmware (kernels changed since) are not resumed
            key = f"{key}:{firmware_digest(firmware.elf)}"
        logits, counts, done = _load_partial(partial, key, len(images), classes)
        if done:
            tqdm.write(f"resuming the {target} eval at image {done}/{len(images)}")
        hello = link.info or link.hello()
        check_hello(hello, manifest, link.name)
        start = saved = time.perf_counter()
        i = done
        try:
            for i in progress(range(done, len(images)), desc=f"eval on {target}", unit="img", initial=done,
                          total=len(images)):  # fmt: skip
                try:
                    result = link.infer(images[i])
                except DeviceError as err:
                    raise DeviceError(f"test image {i}: {err} (run the eval again to resume at this image)") from None
                logits[i] = np.frombuffer(result.logits, np.int8)
                counts[i] = result.count
                if time.perf_counter() - saved >= CHECKPOINT_SECONDS:
                    _save_partial(partial, key, logits, counts, i + 1)
                    saved = time.perf_counter()
            i = len(images)
        finally:
            if i > done:  # whatever stopped the run, the images answered so far are kept
                _save_partial(partial, key, logits, counts, i)
        seconds = (time.perf_counter() - start) / max(len(images) - done, 1)
        mem = link.memory()
        stats = asdict(link.stats)
    memory = None
    if firmware is not None:
        report = json.loads(BuildDir(build).memory_report.read_text())
        memory = MeasuredMemory(
            predicted_arena=manifest["arena_bytes"],
            measured_arena=mem.arena_bytes,
            predicted_sram=report["sram_bytes"],
            measured_sram=mem.arena_bytes + mem.stack_high_water + mem.static_bytes,
            stack_high_water=mem.stack_high_water,
            static_bytes=mem.static_bytes,
            predicted_flash=report["flash_bytes"],
            measured_flash=firmware.size.flash_bytes,
        )
    partial.unlink(missing_ok=True)
    return logits, counts, seconds, hello.counter_kind.name.lower(), memory, stats


def evaluate_build(
    build_dir: str | Path,
    board: str | None = None,
    dataset: str | None = None,
    limit: int | None = None,
    data_dir: str | Path | None = None,
    port: str | None = None,
) -> EvalResult:
    """Run the build over test images: on an emulated `board` started here, on the board connected at `port`, or
    with neither as the generated C built for this machine (gcc)."""
    build = Path(build_dir)
    manifest = read_manifest(build)
    model_file = load_model(BuildDir(build).model)
    qmodel, graph = build_graph(model_file, manifest["name"], BuildDir(build).schedule(), BuildDir(build).variants())
    if model_hash(graph) != manifest["model_hash"]:
        raise McuformerError(f"{build}/model.pt does not match the generated C (hash differs): recompile")
    if limit is not None and limit < 1:
        raise McuformerError(f"the number of test images must be at least 1, got {limit}")
    data = load_for_arch(dataset or manifest["dataset"], "test", model_file.arch, data_dir,
                         model_file.dataset.classes)  # fmt: skip
    if limit is not None:
        data = data.subset(np.arange(min(limit, len(data))))
    with torch.no_grad():
        fp32 = np.concatenate([
            model_file.model(pixels_to_tensor(data.images[i : i + 500])).argmax(1).numpy()
            for i in range(0, len(data), 500)
        ])  # fmt: skip
    ref_logits = reference.predict(qmodel, data.images)
    int8_images = reference.quantize_pixels(data.images)
    memory, counter, counts, link = None, "", np.zeros(1), None
    target = board or (HOST if port is None else manifest["board"])
    if board is None and port is None:
        exe = build_host_runner(build)
        start = time.perf_counter()
        dev_logits = run_host(exe, int8_images, ref_logits.shape[1])
        seconds = (time.perf_counter() - start) / max(len(data), 1)
    else:
        key = resume_key(manifest["model_hash"], int8_images)
        dev_logits, counts, seconds, counter, memory, link = _run_device(build, target, port, int8_images, manifest,
                                                                         key)  # fmt: skip
    ref_pred = ref_logits.argmax(1)
    result = EvalResult(
        target=target if port is None else port,
        dataset=data.name,
        images=len(data),
        fp32_accuracy=float((fp32 == data.labels).mean()),
        int8_accuracy=float((ref_pred == data.labels).mean()),
        device_accuracy=float((dev_logits.argmax(1) == data.labels).mean()),
        top1_agreement_fp32_int8=float((fp32 == ref_pred).mean()),
        logits_exact=float((dev_logits == ref_logits).all(axis=1).mean()),
        counter=counter,
        mean_count=float(np.mean(counts)) if counter else 0.0,
        seconds_per_image=seconds,
        memory=memory,
        link=link,
        predicted_instructions=None if target == HOST else _predicted_instructions(graph, target, port),
    )
    name = target if port is None else "serial"
    (build / f"eval_{name}.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    return result
