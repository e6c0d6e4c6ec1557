"""The serial protocol between host and firmware (the C side is firmware/runtime/mcf_protocol.h).

Frame, little-endian::

    u8 sync 0xA5 | u8 type | u8 seq | u32 length | u16 CRC-16/CCITT-FALSE of the 7 bytes before | payload | u32 CRC-32

A reply has type = request | 0x80 and the request's seq. The device finds frames by their sync byte (after a bad
header it rescans the bytes it read), answers each corrupt or truncated frame or stretch of noise with one ERROR
frame, reports a fault with an unsolicited FAULT frame and announces every start with a BOOT frame. Images
travel whole in the INFER payload (the length field is 32-bit: 240x240x3 = 172,800 B fits), written by the device
straight into the model's input buffer.

This module is pure: encoding, decoding and the message layouts; I/O lives in mcuformer.device.serial_link.
"""

from __future__ import annotations

import binascii
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

VERSION = 1
SYNC = 0xA5
HEADER = struct.Struct("<BBBI")  # sync, type, seq, length (+ u16 header CRC)
HEADER_BYTES = HEADER.size + 2
TRAILER_BYTES = 4
SMALL_PAYLOAD = 64  # payload limit of every request but INFER
MAX_REPLY_PAYLOAD = 1 << 20  # sanity limit on what the host accepts
GAP_MS = 300  # the device drops a frame whose next byte does not come within this
REPLY = 0x80
HELLO_FLAG_DEBUG = 0x01


class Msg(IntEnum):
    HELLO = 0x01
    INFER = 0x02
    MEMORY = 0x03
    PROFILE = 0x04
    EXIT = 0x05
    INFER_ROW = 0x06  # streaming builds: one patch row of image rows per frame
    PEEK = 0x10
    POKE = 0x11
    ERROR = 0xEE
    FAULT = 0xFA
    BOOT = 0xB0  # unsolicited at start-up: the model hash


class ErrorCode(IntEnum):
    HEADER_CRC = 1
    PAYLOAD_CRC = 2
    LENGTH = 3
    UNKNOWN_TYPE = 4
    TIMEOUT = 5
    MODEL = 6
    UNSUPPORTED = 7


RETRYABLE_ERRORS = frozenset({ErrorCode.HEADER_CRC, ErrorCode.PAYLOAD_CRC, ErrorCode.TIMEOUT})


class CounterKind(IntEnum):
    CYCLES = 0
    INSTRUCTIONS = 1


def crc16_ccitt(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (polynomial 0x1021, initial 0xFFFF, no reflection): 0x29B1 for b"123456789"."""
    return binascii.crc_hqx(data, crc)


def crc32(data: bytes) -> int:
    """CRC-32 as zlib computes it (IEEE 802.3): 0xCBF43926 for b"123456789"."""
    return zlib.crc32(data) & 0xFFFFFFFF


def encode_header(msg_type: int, seq: int, length: int) -> bytes:
    head = HEADER.pack(SYNC, msg_type, seq & 0xFF, length)
    return head + struct.pack("<H", crc16_ccitt(head))


def encode_frame(msg_type: int, seq: int, payload: bytes = b"") -> bytes:
    return encode_header(msg_type, seq, len(payload)) + payload + struct.pack("<I", crc32(payload))


@dataclass(frozen=True)
class Header:
    type: int
    seq: int
    length: int


def decode_header(data: bytes) -> Header | None:
    """The header of 9 bytes starting with SYNC, or None when its CRC does not match."""
    if len(data) != HEADER_BYTES or data[0] != SYNC:
        return None
    if crc16_ccitt(data[: HEADER.size]) != struct.unpack_from("<H", data, HEADER.size)[0]:
        return None
    _, msg_type, seq, length = HEADER.unpack_from(data)
    return Header(msg_type, seq, length)


def payload_crc_ok(payload: bytes, trailer: bytes) -> bool:
    return len(trailer) == TRAILER_BYTES and struct.unpack("<I", trailer)[0] == crc32(payload)


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes


# ---- message payloads ------------------------------------------------------------------------------------------


class PayloadError(ValueError):
    """A payload too short or malformed for its message type."""


def _unpack(fmt: struct.Struct, payload: bytes, what: str) -> tuple[int, ...]:
    if len(payload) < fmt.size:
        raise PayloadError(f"{what} payload has {len(payload)} bytes, needs at least {fmt.size}")
    return fmt.unpack_from(payload)


_HELLO = struct.Struct("<HBBIIIIHHHHHHI16s")


@dataclass(frozen=True)
class HelloInfo:
    protocol_version: int
    counter_kind: CounterKind
    debug_commands: bool
    counter_scale: int  # one counter tick is this many cycles/instructions (QEMU: 40 instructions)
    clock_hz: int
    arena_bytes: int
    input_bytes: int
    input_shape: tuple[int, int, int]  # H, W, C
    num_classes: int
    num_ops: int
    stream_rows: int  # 0: INFER takes the whole image; else the image goes as this many INFER_ROW strips
    max_payload: int
    model_hash: str
    board: str
    model_name: str

    @classmethod
    def decode(cls, payload: bytes) -> HelloInfo:
        (version, kind, flags, scale, clock, arena, input_bytes, h, w, c, classes, ops, stream_rows, max_payload,
         digest) = _unpack(_HELLO, payload, "HELLO")  # fmt: skip
        strings, offset = [], _HELLO.size
        for _ in range(2):
            if offset >= len(payload) or offset + 1 + payload[offset] > len(payload):
                raise PayloadError("HELLO payload: truncated board or model name")
            strings.append(payload[offset + 1 : offset + 1 + payload[offset]].decode("ascii", "replace"))
            offset += 1 + payload[offset]
        return cls(version, CounterKind(kind), bool(flags & HELLO_FLAG_DEBUG), scale, clock, arena, input_bytes,
                   (h, w, c), classes, ops, stream_rows, max_payload, bytes(digest).decode("ascii", "replace"),
                   strings[0], strings[1])  # fmt: skip


_INFER = struct.Struct("<QHH")


@dataclass(frozen=True)
class InferResult:
    logits: bytes  # int8 values, num_classes of them
    argmax: int
    count: int  # cycles or instructions of mcf_model_run alone (see HelloInfo.counter_kind)

    @classmethod
    def decode(cls, payload: bytes) -> InferResult:
        count, argmax, classes = _unpack(_INFER, payload, "INFER")
        logits = payload[_INFER.size :]
        if len(logits) != classes or not 0 <= argmax < max(classes, 1):
            raise PayloadError(f"INFER reply: {len(logits)} logits for {classes} classes, argmax {argmax}")
        return cls(logits, argmax, count)


_MEMORY = struct.Struct("<IIIIIII")


@dataclass(frozen=True)
class MemoryInfo:
    stack_high_water: int  # deepest stack use since reset (stack painting)
    stack_bytes: int
    arena_bytes: int  # the linker's .arena section
    static_bytes: int  # .data + .bss
    ram_bytes: int  # the RAM region (the board's budget)
    flash_used_bytes: int
    rx_overruns: int

    @classmethod
    def decode(cls, payload: bytes) -> MemoryInfo:
        return cls(*_unpack(_MEMORY, payload, "MEMORY"))


@dataclass(frozen=True)
class ProfileInfo:
    op_counts: tuple[int, ...]  # cycles or instructions of each op in the last inference (HelloInfo.counter_kind)

    @classmethod
    def decode(cls, payload: bytes) -> ProfileInfo:
        if len(payload) < 4:
            raise PayloadError(f"PROFILE reply has {len(payload)} bytes, expected at least 4")
        (count,) = struct.unpack_from("<I", payload)
        if len(payload) != 4 + 4 * count:
            raise PayloadError(f"PROFILE reply has {len(payload)} bytes for {count} ops")
        return cls(struct.unpack_from(f"<{count}I", payload, 4))


_ERROR = struct.Struct("<BBHi")


@dataclass(frozen=True)
class ErrorReply:
    code: int
    request_type: int
    detail: int

    @classmethod
    def decode(cls, payload: bytes) -> ErrorReply:
        code, request, _, detail = _unpack(_ERROR, payload, "ERROR")
        return cls(code, request, detail)

    def describe(self) -> str:
        try:
            name = ErrorCode(self.code).name
        except ValueError:
            name = f"code {self.code}"
        try:
            request = Msg(self.request_type).name
        except ValueError:
            request = f"0x{self.request_type:02x}"
        return f"{name} (request {request}, detail {self.detail})"


_FAULT = struct.Struct("<15I")
EXCEPTION_NAMES = {2: "NMI", 3: "HardFault", 4: "MemManage", 5: "BusFault", 6: "UsageFault", 11: "SVCall",
                   12: "DebugMonitor", 14: "PendSV", 15: "SysTick"}  # fmt: skip
_CFSR_BITS = {0: "IACCVIOL", 1: "DACCVIOL", 3: "MUNSTKERR", 4: "MSTKERR", 5: "MLSPERR", 7: "MMARVALID",
              8: "IBUSERR", 9: "PRECISERR", 10: "IMPRECISERR", 11: "UNSTKERR", 12: "STKERR", 13: "LSPERR",
              15: "BFARVALID", 16: "UNDEFINSTR", 17: "INVSTATE", 18: "INVPC", 19: "NOCP", 24: "UNALIGNED",
              25: "DIVBYZERO"}  # fmt: skip
_HFSR_BITS = {1: "VECTTBL", 30: "FORCED", 31: "DEBUGEVT"}


@dataclass(frozen=True)
class FaultReport:
    exception: int
    cfsr: int
    hfsr: int
    mmfar: int
    bfar: int
    r0: int
    r1: int
    r2: int
    r3: int
    r12: int
    lr: int
    pc: int
    xpsr: int
    sp: int
    exc_return: int

    @classmethod
    def decode(cls, payload: bytes) -> FaultReport:
        return cls(*_unpack(_FAULT, payload, "FAULT"))

    @property
    def exception_name(self) -> str:
        if self.exception >= 16:
            return f"IRQ {self.exception - 16}"
        return EXCEPTION_NAMES.get(self.exception, f"exception {self.exception}")

    @property
    def flags(self) -> list[str]:
        cfsr = [name for bit, name in _CFSR_BITS.items() if self.cfsr >> bit & 1]
        return cfsr + [name for bit, name in _HFSR_BITS.items() if self.hfsr >> bit & 1]

    @property
    def fault_address(self) -> int | None:
        if self.cfsr & (1 << 7):
            return self.mmfar
        if self.cfsr & (1 << 15):
            return self.bfar
        return None

    def describe(self) -> str:
        address = self.fault_address
        at = f" at address 0x{address:08x}" if address is not None else ""
        return (f"{self.exception_name} ({', '.join(self.flags) or 'no status bits'}){at}; pc 0x{self.pc:08x}, "
                f"lr 0x{self.lr:08x}, CFSR 0x{self.cfsr:08x}, HFSR 0x{self.hfsr:08x}")  # fmt: skip
