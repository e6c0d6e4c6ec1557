"""Runs firmware on QEMU (mps2-an500 for qemu-m7) and connects a DeviceLink to its first serial port.

    with qemu_session(firmware.elf) as session:  # started, connected, HELLO answered
        assert session.link.info.model_hash == manifest["model_hash"]
        result = session.link.infer(image)  # int8 logits, argmax, instruction count

QEMU runs with `-icount shift=0` (one instruction per virtual nanosecond: timer counts are instruction counts and
repeat exactly) and semihosting (the firmware's EXIT ends QEMU with its status). The serial port is a TCP socket
with `wait=on` by default (the guest starts only once the host is connected, so nothing is lost) or a pty. The
session always ends QEMU: EXIT, then terminate, then kill; a watchdog kills it after `session_timeout` seconds, and
QEMU gets SIGKILL from the kernel when the process that started it dies, however it dies (PR_SET_PDEATHSIG).
With `monitor=True` the session can reset the emulated board (`reset()`, fault injection).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import serial

from mcuformer.boards import EMULATOR_BOARD, Board, load_board
from mcuformer.device.errors import QemuError
from mcuformer.device.serial_link import DEFAULT_RETRIES, HELLO_TIMEOUT_S, DeviceLink

QEMU = "qemu-system-arm"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 3.0
SESSION_TIMEOUT_S = 600.0
BIND_ATTEMPTS = 3
STDERR_TAIL = 600
_PTY_LINE = re.compile(rb"char device redirected to (/dev/pts/\d+)")
PR_SET_PDEATHSIG = 1  # linux/prctl.h

Transport = Literal["tcp", "pty"]


def qemu_command(elf: Path, board: Board, serial_arg: str, monitor: Path | None = None) -> list[str]:
    if board.qemu is None:
        raise QemuError(f"board {board.name} is not emulated (no [qemu] in boards/{board.name}.toml)")
    monitor_arg = f"unix:{monitor},server=on,wait=off" if monitor is not None else "none"
    return [QEMU, "-M", board.qemu.machine, "-cpu", board.qemu.cpu, "-kernel", str(elf), "-display", "none",
            "-monitor", monitor_arg, "-icount", "shift=0", "-semihosting-config", "enable=on,target=native",
            "-serial", serial_arg, *board.qemu.extra_args]  # fmt: skip


@dataclass
class QemuSession:
    link: DeviceLink
    process: subprocess.Popen[bytes]
    command: list[str]
    stderr_path: Path
    returncode: int | None = None
    monitor: Path | None = None

    def reset(self, timeout: float = 2.0) -> None:
        """Resets the emulated board (QEMU's `system_reset`): the firmware starts again and announces it (BOOT)."""
        if self.monitor is None:
            raise QemuError("this QEMU session has no monitor: start it with qemu_session(..., monitor=True)")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.monitor))
            sock.sendall(b"system_reset\n")
            seen = b""
            with contextlib.suppress(TimeoutError):  # the second prompt: the command has been carried out
                while seen.count(b"(qemu)") < 2 and (chunk := sock.recv(4096)):
                    seen += chunk

    def running(self) -> bool:
        return self.process.poll() is None

    def stderr_tail(self) -> str:
        try:
            return " ".join(self.stderr_path.read_text(errors="replace")[-STDERR_TAIL:].split())
        except OSError:
            return ""

    def diagnose(self) -> str:
        status = self.process.poll()
        if status is None:
            return f"QEMU (pid {self.process.pid}) is still running"
        tail = self.stderr_tail()
        return f"QEMU exited with status {status}" + (f": {tail}" if tail else "")

    def wait(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """QEMU's exit status (the firmware's semihosting exit code), or None if it still runs after `timeout`."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.returncode = self.process.wait(timeout)
        return self.returncode


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with(parent: int) -> Callable[[], None]:
    """Runs in the child before exec: SIGKILL when `parent` dies (a kill -9 of the eval must not leave QEMU)."""

    def arm() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return arm


def _start(command: list[str], stderr_path: Path, capture_stdout: bool) -> subprocess.Popen[bytes]:
    try:
        with stderr_path.open("wb") as err:
            return subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=err, preexec_fn=_die_with(os.getpid()),
                                    stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL)  # fmt: skip
    except OSError as exc:
        raise QemuError(f"cannot start {command[0]}: {exc}") from None


def _died(process: subprocess.Popen[bytes], stderr_path: Path) -> QemuError:
    tail = " ".join(stderr_path.read_text(errors="replace")[-STDERR_TAIL:].split())
    return QemuError(f"QEMU exited with status {process.returncode} while starting: {tail or 'no output'}")


def _connect_tcp(process: subprocess.Popen[bytes], port: int, stderr_path: Path) -> serial.SerialBase:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise _died(process, stderr_path)
        try:
            return serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=0.05)
        except (serial.SerialException, OSError):
            if time.monotonic() > deadline:
                raise QemuError(
                    f"QEMU did not open its serial port 127.0.0.1:{port} in {START_TIMEOUT_S:g} s"
                ) from None
            time.sleep(0.02)


def _open_pty(process: subprocess.Popen[bytes], stderr_path: Path) -> tuple[serial.SerialBase, str]:
    assert process.stdout is not None
    deadline, seen = time.monotonic() + START_TIMEOUT_S, b""
    while (match := _PTY_LINE.search(seen)) is None:
        remaining = deadline - time.monotonic()
        if process.poll() is not None:
            raise _died(process, stderr_path)
        if remaining <= 0:
            raise QemuError(f"QEMU did not report its pty within {START_TIMEOUT_S:g} s (stdout: {seen[-200:]!r})")
        ready, _, _ = select.select([process.stdout], [], [], min(remaining, 0.1))
        if ready:
            seen += os.read(process.stdout.fileno(), 4096)
    path = match.group(1).decode()
    try:
        return serial.Serial(path, 115_200, timeout=0.05), path
    except (serial.SerialException, OSError) as err:
        raise QemuError(f"cannot open QEMU's pty {path}: {err}") from None


@contextlib.contextmanager
def qemu_session(
    elf: str | Path,
    board: str | Board = EMULATOR_BOARD,
    *,
    transport: Transport = "tcp",
    hello: bool = True,
    hello_timeout: float = HELLO_TIMEOUT_S,
    session_timeout: float = SESSION_TIMEOUT_S,
    retries: int = DEFAULT_RETRIES,
    monitor: bool = False,
) -> Iterator[QemuSession]:
    """Starts QEMU on `elf`, connects, optionally handshakes (HELLO), yields the session and always stops QEMU."""
    board = load_board(board)
    elf = Path(elf)
    if not elf.is_file():
        raise QemuError(f"no firmware at {elf}")
    if shutil.which(QEMU) is None:
        raise QemuError(f"{QEMU} not found; install it: apt-get install --no-install-recommends qemu-system-arm")
    log_dir = Path(tempfile.mkdtemp(prefix="mcf-qemu-"))
    stderr_path = log_dir / "qemu.stderr"
    session: QemuSession | None = None
    handle: serial.SerialBase | None = None
    process: subprocess.Popen[bytes] | None = None
    watchdog: threading.Timer | None = None
    try:
        monitor_path = log_dir / "monitor.sock" if monitor else None
        process, handle, name, command = _launch(elf, board, transport, stderr_path, monitor_path)
        watchdog = threading.Timer(session_timeout, process.kill)
        watchdog.daemon = True
        watchdog.start()
        link = DeviceLink(handle, name, retries=retries)
        session = QemuSession(link, process, command, stderr_path, monitor=monitor_path)
        link.diagnose = session.diagnose
        if hello:
            link.hello(hello_timeout)
        yield session
    finally:
        if watchdog is not None:
            watchdog.cancel()
        if process is not None:
            _stop(process, session, handle)
            if session is not None:
                session.returncode = process.returncode
        shutil.rmtree(log_dir, ignore_errors=True)


def _launch(
    elf: Path, board: Board, transport: Transport, stderr_path: Path, monitor: Path | None
) -> tuple[subprocess.Popen[bytes], serial.SerialBase, str, list[str]]:
    """Starts QEMU and opens its serial port; retries when the chosen TCP port was taken meanwhile."""
    for attempt in range(BIND_ATTEMPTS):
        port = _free_port()
        serial_arg = f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on" if transport == "tcp" else "pty"
        command = qemu_command(elf, board, serial_arg, monitor)
        process = _start(command, stderr_path, capture_stdout=transport == "pty")
        try:
            if transport == "tcp":
                return process, _connect_tcp(process, port, stderr_path), f"tcp:127.0.0.1:{port}", command
            handle, path = _open_pty(process, stderr_path)
            threading.Thread(target=_drain, args=(process,), daemon=True).start()
            return process, handle, path, command
        except QemuError as err:
            _stop(process, None, None)
            if "bind" not in str(err).lower() or attempt == BIND_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _drain(process: subprocess.Popen[bytes]) -> None:
    """Reads QEMU's stdout to its end so that a full pipe never blocks the emulator."""
    assert process.stdout is not None
    with contextlib.suppress(OSError, ValueError):
        while os.read(process.stdout.fileno(), 4096):
            pass


def _stop(process: subprocess.Popen[bytes], session: QemuSession | None, handle: serial.SerialBase | None) -> None:
    """EXIT if the guest still listens, then terminate, then kill; never waits more than a few seconds."""
    steps: list[Callable[[], None] | None] = [process.terminate, process.kill]
    if process.poll() is None and session is not None and session.link.stats.bytes_received > 0:
        with contextlib.suppress(Exception):  # a guest that never answered gets no EXIT: terminate it
            if session.link.exit(timeout=1.0):
                steps.insert(0, None)  # acknowledged: let it exit by itself first
    for stop in steps:
        if stop is not None and process.poll() is None:
            stop()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_TIMEOUT_S)
            break
    if handle is not None:
        with contextlib.suppress(Exception):
            handle.close()
    if process.stdout is not None:
        process.stdout.close()
