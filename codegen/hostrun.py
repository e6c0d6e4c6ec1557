"""Builds generated C with the host gcc and runs it on images: the proof that C equals the reference."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from mcuformer.codegen.build_dir import BuildDir
from mcuformer.codegen.host_build import KERNEL_INCLUDE, compile_host, kernel_sources
from mcuformer.errors import McuformerError
from mcuformer.firmware import FIRMWARE_DIR

HOST_MAIN = FIRMWARE_DIR / "host" / "mcf_host_main.c"


def build_host_runner(build_dir: Path, sanitize: bool = False) -> Path:
    """Compile build_dir/src (generated model) + portable kernels + the stdin/stdout harness.

    MCF_CHECK_SCRATCH makes the model fail unless every planned scratch buffer has exactly the size the kernel's
    own _get_buffer_size asks for: every host run checks the planner's scratch sizes against the C.
    """
    src = BuildDir(build_dir).src
    exe = Path(build_dir) / ("host_runner_san" if sanitize else "host_runner")
    sources = [*kernel_sources(), src / "mcf_model.c", src / "mcf_weights.c", HOST_MAIN]
    return compile_host(sources, exe, include_dirs=[src, KERNEL_INCLUDE], sanitize=sanitize,
                        extra_flags=["-DMCF_CHECK_SCRATCH=1"])  # fmt: skip


def run_host(exe: Path, images: np.ndarray, num_classes: int, timeout: float = 600.0) -> np.ndarray:
    """int8 images [N, H, W, C] -> int8 logits [N, classes] computed by the compiled C."""
    data = np.ascontiguousarray(images, dtype=np.int8).tobytes()
    proc = subprocess.run([str(exe)], input=data, capture_output=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise McuformerError(f"{exe.name} failed ({proc.returncode}): {proc.stderr.decode()[-400:].strip()}")
    logits = np.frombuffer(proc.stdout, dtype=np.int8)
    if logits.size != len(images) * num_classes:
        raise McuformerError(f"{exe.name} returned {logits.size} logits for {len(images)} images")
    return logits.reshape(len(images), num_classes)
