"""A lossy serial link on purpose: a localhost TCP proxy between the host and a device that damages the bytes.

    with qemu_session(elf, hello=False, monitor=True) as session:
        with FaultProxy(session.link.port, to_device=Faults(flip=1e-4), restart=session.reset) as proxy:
            evaluate_build(build, port=proxy.url)  # `mcuformer eval BUILD --port socket://127.0.0.1:N`

Each direction drops, flips, duplicates and delays bytes and injects bursts of garbage at its own per-byte rates,
from its own seeded generator; `restart_at` resets the device after so many host->device bytes (mid-frame or
while it computes). The proxy is bounded: it listens on 127.0.0.1 only, serves one client, and closes after
`max_seconds` or `max_bytes`. `counts` says what it did.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from mcuformer.device.serial_link import SerialPort

CHUNK = 4096
POLL_S = 0.02


@dataclass(frozen=True)
class Faults:
    """Fault rates of one direction, per byte (delays: per chunk read)."""

    flip: float = 0.0  # one random bit of the byte inverted
    drop: float = 0.0
    duplicate: float = 0.0
    garbage: float = 0.0  # a burst of random bytes inserted before the byte
    garbage_bytes: int = 300
    delay: float = 0.0  # a pause before a chunk is passed on
    delay_s: float = 2.0


@dataclass
class FaultCounts:
    flips: int = 0
    drops: int = 0
    duplicates: int = 0
    garbage_bursts: int = 0
    delays: int = 0
    restarts: int = 0
    bytes: int = 0

    @property
    def injected(self) -> int:
        return self.flips + self.drops + self.duplicates + self.garbage_bursts + self.delays + self.restarts


@dataclass
class _Direction:
    faults: Faults
    rng: random.Random
    counts: FaultCounts = field(default_factory=FaultCounts)

    def damage(self, data: bytes) -> bytes:
        f, out = self.faults, bytearray()
        for byte in data:
            self.counts.bytes += 1
            if f.garbage and self.rng.random() < f.garbage:
                self.counts.garbage_bursts += 1
                out += self.rng.randbytes(f.garbage_bytes)
            if f.drop and self.rng.random() < f.drop:
                self.counts.drops += 1
                continue
            if f.flip and self.rng.random() < f.flip:
                self.counts.flips += 1
                byte ^= 1 << self.rng.randrange(8)
            out.append(byte)
            if f.duplicate and self.rng.random() < f.duplicate:
                self.counts.duplicates += 1
                out.append(byte)
        return bytes(out)

    def pause(self) -> None:
        if self.faults.delay and self.rng.random() < self.faults.delay:
            self.counts.delays += 1
            time.sleep(self.faults.delay_s)


class FaultProxy:
    """Serves one host connection on 127.0.0.1 and relays it to `device` (an open port), damaging both ways."""

    def __init__(
        self,
        device: SerialPort,
        to_device: Faults = Faults(),
        to_host: Faults = Faults(),
        *,
        seed: int = 0,
        restart: Callable[[], None] | None = None,
        restart_at: tuple[int, ...] = (),
        max_seconds: float = 600.0,
        max_bytes: int = 50_000_000,
    ) -> None:
        if restart_at and restart is None:
            raise ValueError("restart_at needs a restart function (e.g. a QEMU session's reset)")
        self.device = device
        self.down = _Direction(to_device, random.Random(seed * 2 + 1))
        self.up = _Direction(to_host, random.Random(seed * 2 + 2))
        self.restart, self.restart_at = restart, sorted(restart_at)
        self.deadline = time.monotonic() + max_seconds
        self.max_bytes = max_bytes
        self._stop = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(POLL_S)
        self.port = int(self._server.getsockname()[1])
        self._threads: list[threading.Thread] = []
        self._client: socket.socket | None = None

    @property
    def url(self) -> str:
        """What `mcuformer eval --port` and open_serial take."""
        return f"socket://127.0.0.1:{self.port}"

    @property
    def counts(self) -> dict[str, FaultCounts]:
        return {"to_device": self.down.counts, "to_host": self.up.counts}

    def __enter__(self) -> FaultProxy:
        accept = threading.Thread(target=self._serve, daemon=True)
        accept.start()
        self._threads.append(accept)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5.0)
        with contextlib.suppress(OSError):
            self._server.close()
        if self._client is not None:
            with contextlib.suppress(OSError):
                self._client.close()

    def _running(self) -> bool:
        total = self.down.counts.bytes + self.up.counts.bytes
        return not self._stop.is_set() and time.monotonic() < self.deadline and total < self.max_bytes

    def _serve(self) -> None:
        while self._running():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            client.settimeout(POLL_S)
            self._client = client
            upward = threading.Thread(target=self._to_host, args=(client,), daemon=True)
            upward.start()
            self._threads.append(upward)
            self._to_device(client)
            break
        if self._client is not None:  # bounded: the host sees the link close
            with contextlib.suppress(OSError):
                self._client.shutdown(socket.SHUT_RDWR)

    def _to_device(self, client: socket.socket) -> None:
        while self._running():
            try:
                data = client.recv(CHUNK)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            self.down.pause()
            start = self.down.counts.bytes
            damaged = self.down.damage(data)
            cut = self._restart_offset(start, start + len(data))
            if cut is None:
                self.device.write(damaged)
                continue
            # The reset lands after `cut` of the bytes read: what came before it reaches the old run of the firmware.
            self.device.write(damaged[: min(cut, len(damaged))])
            self.device.flush()
            self.down.counts.restarts += 1
            assert self.restart is not None
            self.restart()
            self.device.write(damaged[min(cut, len(damaged)) :])

    def _restart_offset(self, start: int, end: int) -> int | None:
        if self.restart_at and start < self.restart_at[0] <= end:
            return self.restart_at.pop(0) - start
        return None

    def _to_host(self, client: socket.socket) -> None:
        while self._running():
            data = self.device.read(CHUNK)
            if not data:
                continue
            self.up.pause()
            try:
                client.sendall(self.up.damage(data))
            except OSError:
                return
