"""Progress bars for long work: tqdm on a terminal; in a log (stdout/stderr not a TTY) one plain line at most
every LOG_INTERVAL_S seconds instead of a stream of carriage-return redraws."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TextIO, TypeVar

from tqdm import tqdm

LOG_INTERVAL_S = 30.0
T = TypeVar("T")


class _Lines:
    """A file for tqdm that turns each redraw into its own line (logs stay readable with grep and tail)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        for part in text.split("\r"):
            if part.strip():
                self.stream.write(part.rstrip("\n") + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress(iterable: Iterable[T] | None = None, **kwargs: Any) -> tqdm:
    """tqdm(iterable, **kwargs), quiet and line-based when stderr is not a terminal."""
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
        kwargs.setdefault("maxinterval", LOG_INTERVAL_S)
        kwargs.setdefault("file", _Lines(sys.stderr))
        kwargs.setdefault("dynamic_ncols", False)
        kwargs.setdefault("ncols", 100)
    return tqdm(iterable, **kwargs)
