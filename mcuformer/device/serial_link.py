"""The host end of the serial protocol on a pyserial port: requests with timeouts, retries and clear errors.

Every wait has a deadline: a request waits `timeout` seconds plus the time the payload needs at MIN_BYTES_PER_S
(QEMU's emulated UART takes host->device bytes at 10-50 KiB/s). A reply that stops arriving mid-frame is abandoned
after FRAME_GAP_S. Corrupt or lost replies and the device's CRC/timeout error frames are resent with exponential
back-off, `retries` times; once a request type has been answered, later ones wait a few times its slowest answer
(not the first-request allowance) and a timeout is resent too. A BOOT frame (the device restarted) makes the link
handshake again, check the model hash and resend. A reply is accepted only with the request's sequence number.
Whatever happens, the caller gets the device's answer or an error: never another request's reply. Silence raises
DeviceTimeout naming the port; a fault report raises DeviceFault.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from mcuformer.device.errors import (
    DeviceError,
    DeviceFault,
    DeviceProtocolError,
    DeviceRejected,
    DeviceRestarted,
    DeviceTimeout,
)
from mcuformer.device.protocol import (
    HEADER_BYTES,
    MAX_REPLY_PAYLOAD,
    REPLY,
    RETRYABLE_ERRORS,
    SYNC,
    TRAILER_BYTES,
    ErrorReply,
    FaultReport,
    Frame,
    HelloInfo,
    InferResult,
    MemoryInfo,
    Msg,
    ProfileInfo,
    decode_header,
    encode_frame,
    payload_crc_ok,
)

POLL_S = 0.05  # pyserial read timeout: reads return at least this often so deadlines are honoured
WRITE_TIMEOUT_S = 120.0
T = TypeVar("T")

MIN_BYTES_PER_S = 5_000  # slowest upload rate allowed for: 172,800 B of image take at most ~35 s
HELLO_TIMEOUT_S = 5.0
HELLO_RETRY_S = 1.0
REQUEST_TIMEOUT_S = 5.0
INFER_TIMEOUT_S = 60.0  # the first inference's allowance (a large model on a slow board)
DEFAULT_RETRIES = 24  # an 800-byte frame at 1e-3 faults per byte fails ~55% of the time: 25 attempts all fail ~3e-7
BACKOFF_S = 0.02  # first pause before a resend, doubled each attempt up to MAX_BACKOFF_S
MAX_BACKOFF_S = 0.5
LOST_REPLY_QUIET_S = 0.2  # after a corrupt header, a line quiet this long means the reply is lost: retry
FRAME_GAP_S = 1.0  # a reply whose next byte does not come within this is lost (the device sends it in one go)
SLOWEST_FACTOR = 10.0  # once answered, a request type waits this many times its slowest answer...
MIN_ADAPTIVE_TIMEOUT_S = 5.0  # ...but at least this long
MAX_RESTARTS = 5  # device restarts one request survives (each followed by a handshake)


class SerialPort(Protocol):
    """The part of pyserial's Serial the link uses (also satisfied by serial_for_url("socket://...") ports)."""

    timeout: float | None
    write_timeout: float | None

    def read(self, size: int = 1) -> bytes: ...

    def write(self, data: bytes, /) -> int | None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


@dataclass
class LinkStats:
    requests: int = 0
    retries: int = 0
    bad_frames: int = 0  # frames from the device that failed a CRC check
    noise_bytes: int = 0  # bytes skipped while looking for a sync byte
    bytes_sent: int = 0
    bytes_received: int = 0
    timeouts: int = 0  # requests resent after no (complete) reply came
    restarts: int = 0  # BOOT frames seen after the handshake (each followed by a new handshake)


class _Retry(Exception):
    pass


class _Timeout(Exception):
    pass


class _Restarted(Exception):
    pass


class DeviceLink:
    """A connected device. `diagnose` (optional) adds context to timeout errors, e.g. whether QEMU still runs."""

    def __init__(
        self,
        port: SerialPort,
        name: str,
        *,
        retries: int = DEFAULT_RETRIES,
        diagnose: Callable[[], str] | None = None,
    ) -> None:
        self.port = port
        self.name = name
        self.retries = retries
        self.diagnose = diagnose
        self.stats = LinkStats()
        self.info: HelloInfo | None = None
        self._seq = 0
        self._pending = bytearray()
        self._received_in_wait = 0
        self._slowest: dict[int, float] = {}  # request type -> slowest reply seen (seconds)
        port.timeout = POLL_S
        port.write_timeout = WRITE_TIMEOUT_S

    # ---- requests -----------------------------------------------------------------------------------------------

    def hello(self, timeout: float = HELLO_TIMEOUT_S) -> HelloInfo:
        """Handshake: sends HELLO every second until a reply arrives or `timeout` passes."""
        end = time.monotonic() + timeout
        while True:
            wait = min(HELLO_RETRY_S, end - time.monotonic())
            try:
                frame = self.request(Msg.HELLO, timeout=max(wait, POLL_S), retries=0, any_seq=True,
                                     what=f"HELLO within {timeout:g} s", handshake=True)  # fmt: skip
                break
            except (DeviceTimeout, DeviceProtocolError):
                if time.monotonic() >= end:
                    raise
        try:
            self.info = HelloInfo.decode(frame.payload)
        except ValueError as err:
            raise DeviceProtocolError(f"malformed HELLO reply from {self.name}: {err}") from None
        return self.info

    def infer(self, image: bytes | np.ndarray, timeout: float = INFER_TIMEOUT_S) -> InferResult:
        """Runs the model on one int8 image (pixel - 128, HWC): logits, argmax and the instruction/cycle count."""
        if isinstance(image, np.ndarray) and image.dtype != np.int8:
            raise TypeError(f"images go to the device as int8 (pixel - 128), got {image.dtype}: use "
                            "mcuformer.quant.reference.quantize_pixels")  # fmt: skip
        data = image.tobytes() if isinstance(image, np.ndarray) else bytes(image)
        if self.info is not None and len(data) != self.info.input_bytes:
            raise ValueError(f"image has {len(data)} bytes; the model on {self.name} takes {self.info.input_bytes}")
        for restart in range(MAX_RESTARTS + 1):
            try:
                if self.info is not None and self.info.stream_rows:
                    return self._infer_rows(data, self.info.stream_rows, timeout)
                return self._decode(InferResult.decode, self.request(Msg.INFER, data, timeout=timeout))
            except DeviceRestarted:  # handshake done: the image goes again, whole
                if restart == MAX_RESTARTS:
                    raise
        raise AssertionError("unreachable")

    def _infer_rows(self, data: bytes, rows: int, timeout: float) -> InferResult:
        """Streaming builds: the image as `rows` strips, each embedded on arrival; the last reply has the logits."""
        strip = len(data) // rows
        for row in range(rows):
            frame = self.request(Msg.INFER_ROW, data[row * strip : (row + 1) * strip], timeout=timeout)
            if row + 1 < rows:
                received = int.from_bytes(frame.payload[:2], "little") if len(frame.payload) >= 2 else -1
                if received != row + 1:
                    raise DeviceProtocolError(f"{self.name} acknowledged strip {received} of {rows}, expected "
                                              f"{row + 1}: say HELLO to restart the image")  # fmt: skip
        return self._decode(InferResult.decode, frame)

    def infer_many(self, images: np.ndarray, timeout: float = INFER_TIMEOUT_S) -> tuple[np.ndarray, list[int]]:
        """int8 images [N, H, W, C] -> (int8 logits [N, classes], per-image counts)."""
        results = [self.infer(image, timeout) for image in images]
        logits = (
            np.stack([np.frombuffer(r.logits, dtype=np.int8) for r in results])
            if results
            else np.zeros((0, 0), np.int8)
        )
        return logits, [r.count for r in results]

    def memory(self) -> MemoryInfo:
        return self._decode(MemoryInfo.decode, self.request(Msg.MEMORY))

    def profile(self) -> ProfileInfo:
        """Per-op counts of the last INFER."""
        return self._decode(ProfileInfo.decode, self.request(Msg.PROFILE))

    def exit(self, code: int = 0, timeout: float = 2.0) -> bool:
        """Asks the device to stop (QEMU exits with `code`); True when it acknowledged before going away."""
        try:
            self.request(Msg.EXIT, struct.pack("<I", code), timeout=timeout, retries=0)
        except DeviceTimeout:
            return False
        return True

    def peek(self, address: int) -> int:
        """Debug firmware only: the 32-bit word at `address`."""
        frame = self.request(Msg.PEEK, struct.pack("<I", address))
        return int(struct.unpack("<I", frame.payload[:4])[0])

    def poke(self, address: int, value: int) -> None:
        """Debug firmware only: writes a 32-bit word."""
        self.request(Msg.POKE, struct.pack("<II", address, value & 0xFFFFFFFF))

    def request(
        self,
        msg_type: int,
        payload: bytes = b"",
        *,
        timeout: float = REQUEST_TIMEOUT_S,
        retries: int | None = None,
        any_seq: bool = False,
        what: str | None = None,
        handshake: bool = False,
    ) -> Frame:
        """Sends a request and returns its reply frame, resending (with back-off) on CRC errors, the device's error
        frames, lost replies and, for a request type answered before, timeouts. A device restart (BOOT) is followed
        by a new handshake and raises DeviceRestarted: the caller decides what to send again."""
        retries = self.retries if retries is None else retries
        name = _name(msg_type)
        slowest = self._slowest.get(msg_type)
        if slowest is not None:
            timeout = min(timeout, max(MIN_ADAPTIVE_TIMEOUT_S, SLOWEST_FACTOR * slowest))
        budget = timeout + len(payload) / MIN_BYTES_PER_S
        why = ""
        for attempt in range(retries + 1):
            if attempt:
                self.stats.retries += 1
                time.sleep(min(BACKOFF_S * 2 ** (attempt - 1), MAX_BACKOFF_S))
            seq = self._next_seq()
            self.stats.requests += 1
            sent = time.monotonic()
            self.send_raw(encode_frame(msg_type, seq, payload))
            self._received_in_wait = 0
            try:
                frame = self._await_reply(msg_type, seq, sent + budget, any_seq, handshake)
            except _Retry as err:
                why = str(err)
                continue
            except _Timeout:
                if slowest is None:  # never answered yet: no evidence that the device is there at all
                    raise DeviceTimeout(
                        f"device did not answer {what or f'{name} within {budget:.3g} s'} on {self.name}: "
                        f"{self._timeout_detail()}"
                    ) from None
                self.stats.timeouts += 1
                why = f"no complete reply within {budget:.3g} s ({self._timeout_detail()})"
                continue
            except _Restarted:
                self.stats.restarts += 1
                self._handshake_again()
                raise DeviceRestarted(f"{self.name} restarted while handling {name}; handshake repeated") from None
            self._slowest[msg_type] = max(self._slowest.get(msg_type, 0.0), time.monotonic() - sent)
            return frame
        raise DeviceProtocolError(f"{name} to {self.name} failed after {retries + 1} attempts: {why}")

    def send_raw(self, data: bytes) -> None:
        """Writes bytes as they are (tests use it to send corrupt frames)."""
        try:
            self.port.write(data)
            self.port.flush()
        except Exception as err:  # pyserial raises SerialException / SerialTimeoutException / OSError
            raise DeviceError(f"cannot write to {self.name}: {err}") from None
        self.stats.bytes_sent += len(data)

    def read_frame(self, timeout: float) -> Frame:
        """The next well-formed frame from the device (tests use it to read error replies)."""
        try:
            return self._read_frame(time.monotonic() + timeout)
        except _Timeout:
            raise DeviceTimeout(f"no frame from {self.name} within {timeout:g} s: {self._timeout_detail()}") from None

    def close(self) -> None:
        self.port.close()

    # ---- internals ----------------------------------------------------------------------------------------------

    def _next_seq(self) -> int:
        """1..255: the device's errors about frames it could not read carry seq 0."""
        self._seq = self._seq % 255 + 1
        return self._seq

    def _handshake_again(self) -> None:
        before = self.info
        after = self.hello()
        if before is not None and after.model_hash != before.model_hash:
            raise DeviceProtocolError(f"{self.name} restarted with another model (hash {after.model_hash}, was "
                                      f"{before.model_hash}): flash this build again")  # fmt: skip

    def _decode(self, decode: Callable[[bytes], T], frame: Frame) -> T:
        try:
            return decode(frame.payload)
        except ValueError as err:
            raise DeviceProtocolError(f"malformed {_name(frame.type & ~REPLY)} reply from {self.name}: {err}") from None

    def _await_reply(self, msg_type: int, seq: int, deadline: float, any_seq: bool, handshake: bool) -> Frame:
        while True:
            frame = self._read_frame(deadline)
            if frame.type == msg_type | REPLY and (any_seq or frame.seq == seq):
                return frame
            if frame.type == Msg.BOOT:
                if handshake:  # a start-up announcement before the handshake: expected
                    continue
                raise _Restarted()
            if frame.type == Msg.FAULT:
                report = self._decode(FaultReport.decode, frame)
                raise DeviceFault(f"device {self.name} faulted: {report.describe()}", report)
            if frame.type == Msg.ERROR:
                error = self._decode(ErrorReply.decode, frame)
                if error.code in RETRYABLE_ERRORS and frame.seq in (seq, 0):  # 0: a frame it could not read
                    raise _Retry(f"device reported {error.describe()}")
                if frame.seq == seq:
                    raise DeviceRejected(f"{self.name} rejected {_name(msg_type)}: {error.describe()}",
                                         error.code, error.detail)  # fmt: skip
            # Anything else is a stale reply to an earlier request: skip it.

    def _read_frame(self, deadline: float) -> Frame:
        quiet: float | None = None  # set once a corrupt header shows that a frame was lost
        while True:
            first = self._read_exact(1, deadline, quiet)
            if first[0] != SYNC:
                self.stats.noise_bytes += 1
                continue
            rest = self._read_exact(HEADER_BYTES - 1, deadline, quiet)
            header = decode_header(first + rest)
            if header is None or header.length > MAX_REPLY_PAYLOAD:
                self.stats.bad_frames += 1
                self._pending[:0] = rest  # look for the next sync byte inside what was read
                quiet = LOST_REPLY_QUIET_S
                continue
            body = self._read_exact(header.length + TRAILER_BYTES, deadline, FRAME_GAP_S, "a reply stopped mid-frame")
            payload = body[: header.length]
            if not payload_crc_ok(payload, body[header.length :]):
                self.stats.bad_frames += 1
                raise _Retry(f"a {_name(header.type & ~REPLY)} reply failed its CRC check")
            return Frame(header.type, header.seq, payload)

    def _read_exact(
        self, n: int, deadline: float, quiet: float | None = None, lost: str = "a reply header failed its CRC check"
    ) -> bytes:
        """n bytes, or _Timeout at the deadline, or _Retry(`lost`) when `quiet` seconds pass without a byte."""
        buf = bytearray(self._pending[:n])
        del self._pending[:n]
        last_byte = time.monotonic()
        while len(buf) < n:
            now = time.monotonic()
            if now >= deadline or (quiet is not None and now - last_byte >= quiet):
                self._pending[:0] = buf
                if now < deadline:
                    raise _Retry(lost)
                raise _Timeout()
            try:
                chunk = self.port.read(n - len(buf))
            except Exception as err:  # pyserial raises SerialException / OSError when the other end goes away
                raise DeviceError(f"cannot read from {self.name}: {err}; {self._diagnosis()}") from None
            if chunk:
                last_byte = time.monotonic()
            buf += chunk
            self.stats.bytes_received += len(chunk)
            self._received_in_wait += len(chunk)
        return bytes(buf)

    def _timeout_detail(self) -> str:
        got = self._received_in_wait
        heard = "no bytes received" if got == 0 else f"{got} bytes received but no complete reply"
        return f"{heard}; {self._diagnosis()}"

    def _diagnosis(self) -> str:
        if self.diagnose is None:
            return "is the board connected, flashed with this build and on this port?"
        return self.diagnose()


def _name(msg_type: int) -> str:
    try:
        return Msg(msg_type).name
    except ValueError:
        return f"message 0x{msg_type:02x}"


def open_serial(port: str, baud: int = 115_200, *, retries: int = DEFAULT_RETRIES) -> DeviceLink:
    """A link on a serial device (/dev/ttyACM0, /dev/pts/N, or a pyserial URL such as socket://host:port)."""
    import serial

    try:
        handle = serial.serial_for_url(port, baudrate=baud, timeout=POLL_S, write_timeout=WRITE_TIMEOUT_S)
    except (serial.SerialException, OSError, ValueError) as err:
        raise DeviceError(f"cannot open serial port {port}: {err}") from None
    return DeviceLink(handle, port, retries=retries)
