"""Accuracy of a compiled build: fp32 (PyTorch), int8 reference (numpy) and the generated C, side by side."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from mcuformer.checkpoint import load_model
from mcuformer.codegen.compiler import MANIFEST, build_graph
from mcuformer.codegen.emit import model_hash
from mcuformer.codegen.hostrun import build_host_runner, run_host
from mcuformer.errors import McuformerError
from mcuformer.quant import reference
from mcuformer.train import load_for_arch, pixels_to_tensor


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
    device_seconds: float

    def table(self) -> str:
        return "\n".join([
            f"{self.images} {self.dataset} test images on {self.target}:",
            f"  fp32 (PyTorch)          {100 * self.fp32_accuracy:6.2f}%",
            f"  int8 reference (numpy)  {100 * self.int8_accuracy:6.2f}%   top-1 agreement with fp32 "
            f"{100 * self.top1_agreement_fp32_int8:.2f}%",
            f"  int8 {self.target:<18} {100 * self.device_accuracy:6.2f}%   logits equal to the reference on "
            f"{100 * self.logits_exact:.2f}% of images",
        ])  # fmt: skip


def read_manifest(build_dir: Path) -> dict:
    path = Path(build_dir) / MANIFEST
    if not path.is_file():
        raise McuformerError(
            f"{build_dir} is not an mcuformer build (no {MANIFEST}); run `mcuformer compile` first"
        )
    manifest: dict = json.loads(path.read_text())
    return manifest


def evaluate_build(
    build_dir: str | Path,
    target: str = "host",
    dataset: str | None = None,
    limit: int | None = None,
    data_dir: str | Path | None = None,
) -> EvalResult:
    build = Path(build_dir)
    manifest = read_manifest(build)
    if target != "host":
        raise McuformerError(f"unknown eval target {target!r}; supported: host")
    model_file = load_model(build / "model.pt")
    qmodel, graph = build_graph(model_file, manifest["name"])
    if model_hash(graph) != manifest["model_hash"]:
        raise McuformerError(f"{build}/model.pt does not match the generated C (hash differs): recompile")
    data = load_for_arch(dataset or manifest["dataset"], "test", model_file.arch, data_dir)
    if limit is not None:
        data = data.subset(np.arange(min(limit, len(data))))
    with torch.no_grad():
        fp32 = np.concatenate([
            model_file.model(pixels_to_tensor(data.images[i : i + 500])).argmax(1).numpy()
            for i in range(0, len(data), 500)
        ])  # fmt: skip
    ref_logits = reference.predict(qmodel, data.images)
    exe = build_host_runner(build)
    start = time.perf_counter()
    dev_logits = run_host(exe, reference.quantize_pixels(data.images), ref_logits.shape[1])
    seconds = time.perf_counter() - start
    ref_pred = ref_logits.argmax(1)
    result = EvalResult(
        target=target,
        dataset=data.name,
        images=len(data),
        fp32_accuracy=float((fp32 == data.labels).mean()),
        int8_accuracy=float((ref_pred == data.labels).mean()),
        device_accuracy=float((dev_logits.argmax(1) == data.labels).mean()),
        top1_agreement_fp32_int8=float((fp32 == ref_pred).mean()),
        logits_exact=float((dev_logits == ref_logits).all(axis=1).mean()),
        device_seconds=seconds,
    )
    (build / f"eval_{target}.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    return result
