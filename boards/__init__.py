"""Board descriptors: one TOML file per board in this folder; every board fact is read from there."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from mcuformer.errors import McuformerError

BOARDS_DIR = Path(__file__).resolve().parent


class BoardError(McuformerError):
    pass


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    core: str
    clock_hz: int
    sram_bytes: int
    flash_bytes: int


def board_names() -> list[str]:
    return sorted(p.stem for p in BOARDS_DIR.glob("*.toml"))


def load_board(name: str) -> Board:
    path = BOARDS_DIR / f"{name}.toml"
    if not path.is_file():
        raise BoardError(f"unknown board {name!r}; known boards: {', '.join(board_names())}")
    try:
        data = tomllib.loads(path.read_text())
        return Board(**{key: data[key] for key in Board.__dataclass_fields__})
    except (tomllib.TOMLDecodeError, KeyError, TypeError) as err:
        raise BoardError(f"board file {path} is malformed: {err}") from None
