"""C sources that run on the chip, shipped as package data (kernels, runtime, board support)."""

from pathlib import Path

FIRMWARE_DIR = Path(__file__).resolve().parent
KERNELS_DIR = FIRMWARE_DIR / "kernels"
