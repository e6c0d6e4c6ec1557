"""The GNU ld script of a board, rendered from its descriptor (boards/<name>.toml) and the stack reserve."""

from __future__ import annotations

from pathlib import Path

import jinja2

from mcuformer.boards import Board, load_board
from mcuformer.codegen.report import STACK_RESERVE_BYTES
from mcuformer.firmware import FIRMWARE_DIR

LINKER_DIR = FIRMWARE_DIR / "linker"
TEMPLATE = "mcf_link.ld.j2"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(LINKER_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.globals["hex"] = lambda value: f"0x{value:08X}"
    return env


def render_linker_script(board: Board | str, stack_bytes: int = STACK_RESERVE_BYTES) -> str:
    """The linker script text: FLASH and RAM from the board, the stack of `stack_bytes` at the top of RAM."""
    board = load_board(board)
    if stack_bytes <= 0 or stack_bytes % 8:
        raise ValueError(f"stack_bytes must be a positive multiple of 8, got {stack_bytes}")
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(
            board=board,
            flash=board.flash_region,
            ram=board.ram_region,
            extra=board.extra_regions,
            stack_bytes=stack_bytes,
        )
    )


def write_linker_script(board: Board | str, path: str | Path, stack_bytes: int = STACK_RESERVE_BYTES) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_linker_script(board, stack_bytes))
    return path
