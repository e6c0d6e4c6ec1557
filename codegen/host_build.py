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


KERNEL_VARIANTS = ("portable", "dsp")  # dsp: ARMv7E-M (Cortex-M4/M7) DSP-extension kernels


def kernel_sources(variant: str = "portable") -> list[Path]:
    """The kernel library's .c files of one variant, sorted by file name.

    `portable` is firmware/kernels/portable. Another variant (firmware/kernels/<variant>) overrides portable files
    of the same name (the same public function) and takes the portable file for every function it does not
    optimise, so the library is always complete and a variant never duplicates code it does not change. Its
    support files, `mcf_<variant>_*.c`, hold the helpers its kernels share (one copy in the image).
    """
    if variant not in KERNEL_VARIANTS:
        raise McuformerError(f"no kernel sources for variant {variant!r}; known variants: {', '.join(KERNEL_VARIANTS)}")
    base = {p.name: p for p in (KERNELS_DIR / "portable").glob("*.c")}
    if not base:
        raise McuformerError(f"no portable kernel sources in {KERNELS_DIR / 'portable'}")
    if variant == "portable":
        return [base[name] for name in sorted(base)]
    overrides = {p.name: p for p in (KERNELS_DIR / variant).glob("*.c")}
    support = {name: path for name, path in overrides.items() if name.startswith(f"mcf_{variant}_")}
    unknown = sorted(set(overrides) - set(base) - set(support))
    if not overrides or unknown:
        raise McuformerError(
            f"kernel variant {variant!r} in {KERNELS_DIR / variant} must override portable kernels by file name "
            f"(or name support files mcf_{variant}_*.c); "
            f"{'it has none' if not overrides else 'no portable file for ' + ', '.join(unknown)}"
        )
    merged = {**base, **overrides}
    return [merged[name] for name in sorted(merged)]


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
