"""Board descriptors (one TOML file per board), shipped as package data."""

from pathlib import Path

BOARDS_DIR = Path(__file__).resolve().parent
