"""Builds C for the host with gcc: the kernel library and generated models, for tests and the host runner."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from mcuformer.errors import McuformerError
from mcuformer.firmware import KERNELS_DIR

KERNEL_INCLUDE: Path = KERNELS_DIR / "include"
HOST_CC = "gcc"
BASE_FLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror")
SHARED_FLAGS = ("-shared", "-fPIC")
# -O1 after -O2 wins: a sanitized build keeps usable stack traces.
SANITIZE_FLAGS = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g", "-O1")
ERROR_LINES = 20


def kernel_sources(variant: str = "portable") -> list[Path]:
    """The kernel library's .c files of one variant (firmware/kernels/<variant>), sorted."""
    folder = KERNELS_DIR / variant
    sources = sorted(folder.glob("*.c"))
    if not sources:
        raise McuformerError(f"no kernel sources for variant {variant!r} in {folder}")
    return sources


def compile_host(
    sources: Sequence[Path],
    output: Path,
    *,
    include_dirs: Sequence[Path] = (),
    shared: bool = False,
    sanitize: bool = False,
    extra_flags: Sequence[str] = (),
) -> Path:
    """gcc -std=c99 -O2 -Wall -Wextra -Werror [shared] [ASan+UBSan] sources -o output; returns output.

    Raises McuformerError with the first lines of the compiler's messages when the build fails.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [
        HOST_CC,
        *BASE_FLAGS,
        *(SHARED_FLAGS if shared else ()),
        *(SANITIZE_FLAGS if sanitize else ()),
        *(f"-I{d}" for d in include_dirs),
        *extra_flags,
        *(str(s) for s in sources),
        "-o",
        str(output),
    ]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise McuformerError(f"cannot run the host C compiler {HOST_CC!r}: {exc}") from exc
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        detail = "\n".join(lines[:ERROR_LINES])
        raise McuformerError(f"host build of {output.name} failed ({HOST_CC} exit {proc.returncode}):\n{detail}")
    return output
