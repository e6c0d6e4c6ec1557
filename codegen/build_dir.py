"""The build folder `mcuformer compile` writes, in one place: its layout and its manifest.

build/<name>/
    src/                  generated C (mcf_model.c/.h, mcf_weights.c/.h)
    model.pt              the model it was compiled from (eval re-derives the int8 reference from it)
    mcuformer.json        the manifest: name, hash, board, schedule, attention kinds, input shape, classes, arena...
    memory_report.json    the plan's per-op table and totals (.txt and memory_plan.png beside it)
    firmware/<board>/     firmware built by eval/profile; platformio/  the PlatformIO project
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcuformer.codegen.lower import Variants
from mcuformer.errors import McuformerError

MANIFEST = "mcuformer.json"
# Builds written before the manifest recorded a schedule were lowered layer by layer.
LEGACY_SCHEDULE = "layer"


@dataclass(frozen=True)
class BuildDir:
    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def src(self) -> Path:
        return self.root / "src"

    @property
    def model(self) -> Path:
        return self.root / "model.pt"

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    @property
    def memory_report(self) -> Path:
        return self.root / "memory_report.json"

    @property
    def platformio(self) -> Path:
        return self.root / "platformio"

    def firmware(self, board: str, suffix: str = "") -> Path:
        return self.root / "firmware" / f"{board}{suffix}"

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.is_file():
            raise McuformerError(
                f"{self.root} is not an mcuformer build (no {MANIFEST}); run `mcuformer compile` first"
            )
        manifest: dict[str, Any] = json.loads(self.manifest_path.read_text())
        return manifest

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self.manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")

    def kernel_flags(self) -> list[str]:
        """-D flags of the kernel paths the model never takes (code_size.kernel_defines; none in older builds)."""
        defines: dict[str, int] = self.manifest().get("kernel_defines", {})
        return [f"-D{name}={value}" for name, value in sorted(defines.items())]

    def schedule(self) -> str:
        return str(self.manifest().get("schedule", LEGACY_SCHEDULE))

    def variants(self) -> Variants:
        """The kernel variants as compiled (a build from before a choice was recorded: that choice's default)."""
        return Variants.of(self.manifest())


def read_manifest(build_dir: str | Path) -> dict[str, Any]:
    """The manifest `compile` writes into a build folder."""
    return BuildDir(build_dir).manifest()
