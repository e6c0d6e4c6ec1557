"""Firmware, serial protocol and QEMU: a real compiled model on the emulated Cortex-M7 equals the int8 reference.

Needs arm-none-eabi-gcc and qemu-system-arm (both installed by `make setup`); nothing here is skipped.
"""

from __future__ import annotations

import dataclasses
import os
import re
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import serial

from mcuformer.boards import QemuTarget, load_board
from mcuformer.codegen.compiler import CompiledModel, compile_model
from mcuformer.codegen.report import STACK_RESERVE_BYTES
from mcuformer.data import load_dataset
from mcuformer.device import protocol
from mcuformer.device.build import Firmware, build_firmware
from mcuformer.device.errors import (
    DeviceFault,
    DeviceProtocolError,
    DeviceRejected,
    DeviceTimeout,
    FirmwareBudgetError,
    FirmwareBuildError,
    QemuError,
)
from mcuformer.device.protocol import ErrorCode, ErrorReply, Msg, encode_frame
from mcuformer.device.qemu import qemu_session
from mcuformer.device.runner import run_images
from mcuformer.device.serial_link import DeviceLink
from mcuformer.firmware import FIRMWARE_DIR
from mcuformer.quant import reference

N_IMAGES = 50


@pytest.fixture(scope="module")
def compiled(micro_run, tmp_path_factory) -> CompiledModel:
    run, _ = micro_run
    return compile_model(run / "model.pt", "qemu-m7", tmp_path_factory.mktemp("device") / "micro", name="micro")


@pytest.fixture(scope="module")
def firmware(compiled) -> Firmware:
    return build_firmware(compiled.out_dir)


@pytest.fixture(scope="module")
def debug_firmware(compiled) -> Firmware:
    return build_firmware(compiled.out_dir, debug_commands=True)


@pytest.fixture(scope="module")
def test_images() -> np.ndarray:
    return load_dataset("fashion-mnist", "test").images[:N_IMAGES]


def _c_defines(path: Path) -> dict[str, int]:
    pattern = re.compile(r"^#define (MCF_\w+) (0x[0-9A-Fa-f]+|\d+)u?\b", re.MULTILINE)
    return {name: int(value, 0) for name, value in pattern.findall(path.read_text())}


def test_python_and_c_agree_on_the_protocol():
    c = _c_defines(FIRMWARE_DIR / "runtime" / "mcf_protocol.h")
    assert c["MCF_PROTO_VERSION"] == protocol.VERSION and c["MCF_PROTO_SYNC"] == protocol.SYNC
    assert c["MCF_PROTO_HEADER_BYTES"] == protocol.HEADER_BYTES
    assert c["MCF_PROTO_TRAILER_BYTES"] == protocol.TRAILER_BYTES
    assert c["MCF_PROTO_SMALL_PAYLOAD"] == protocol.SMALL_PAYLOAD
    assert c["MCF_PROTO_GAP_MS"] == protocol.GAP_MS
    assert c["MCF_MSG_REPLY"] == protocol.REPLY and c["MCF_HELLO_FLAG_DEBUG"] == protocol.HELLO_FLAG_DEBUG
    assert {k[8:]: v for k, v in c.items() if k.startswith("MCF_MSG_") and k != "MCF_MSG_REPLY"} == {
        m.name: m.value for m in Msg
    }
    assert {k[8:]: v for k, v in c.items() if k.startswith("MCF_ERR_")} == {e.name: e.value for e in ErrorCode}
    bsp = _c_defines(FIRMWARE_DIR / "runtime" / "mcf_bsp.h")
    assert {k[12:]: v for k, v in bsp.items() if k.startswith("MCF_COUNTER_")} == {
        k.name: k.value for k in protocol.CounterKind
    }


def test_frames_crcs_and_payloads():
    assert protocol.crc16_ccitt(b"123456789") == 0x29B1 and protocol.crc32(b"123456789") == 0xCBF43926
    frame = encode_frame(Msg.INFER, 7, b"\x01\x02\x03")
    assert frame[0] == protocol.SYNC and len(frame) == protocol.HEADER_BYTES + 3 + protocol.TRAILER_BYTES
    assert protocol.decode_header(frame[:9]) == protocol.Header(Msg.INFER, 7, 3)
    assert protocol.payload_crc_ok(frame[9:12], frame[12:])
    corrupt = bytearray(frame)
    corrupt[4] ^= 1
    assert protocol.decode_header(bytes(corrupt[:9])) is None
    assert not protocol.payload_crc_ok(b"\x01\x02\x04", frame[12:])
    reply = struct.pack("<QHH", 123, 1, 3) + bytes([0xFE, 0x05, 0x80])
    assert protocol.InferResult.decode(reply) == protocol.InferResult(b"\xfe\x05\x80", 1, 123)
    with pytest.raises(protocol.PayloadError):
        protocol.InferResult.decode(reply[:-1])
    error = ErrorReply.decode(struct.pack("<BBHi", 2, Msg.INFER, 0, 784))
    assert error.describe() == "PAYLOAD_CRC (request INFER, detail 784)"


def test_a_silent_device_times_out_with_the_port_named():
    master, slave = os.openpty()
    name = os.ttyname(slave)
    port = serial.Serial(name, 115_200)
    try:
        link = DeviceLink(port, name)
        start = time.monotonic()
        with pytest.raises(DeviceTimeout, match=rf"device did not answer HELLO within 0.5 s on {name}: no bytes"):
            link.hello(timeout=0.5)
        assert time.monotonic() - start < 2.0
    finally:
        port.close()
        os.close(master)
        os.close(slave)


def _vector(elf: Path, index: int) -> int:
    """Entry `index` of the vector table (the .isr_vector section, extracted with objcopy)."""
    out = elf.with_suffix(".vectors.bin")
    subprocess.run(["arm-none-eabi-objcopy", "-O", "binary", "-j", ".isr_vector", str(elf), str(out)], check=True)
    return int(struct.unpack_from("<I", out.read_bytes(), 4 * index)[0])


def _symbol(elf: Path, name: str) -> int:
    out = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    return next(int(p[0], 16) for p in (line.split() for line in out.splitlines()) if len(p) == 3 and p[2] == name)


def test_firmware_builds_for_qemu_and_links_for_the_stm32f746(compiled, firmware):
    arena = compiled.plan.arena_bytes
    size = firmware.size
    assert firmware.elf.is_file() and size.arena_symbol_bytes == size.sections[".arena"] == arena
    assert size.stack_bytes == STACK_RESERVE_BYTES
    assert size.static_bytes <= compiled.report.runtime_static_bytes, "the runtime statics outgrew the reserve"
    assert size.ram_bytes == size.sections[".data"] + arena + size.sections[".bss"] + STACK_RESERVE_BYTES
    assert 0 < size.flash_bytes < 64 * 1024 and "RAM" in size.summary()
    assert _vector(firmware.elf, 1) == _symbol(firmware.elf, "Reset_Handler") | 1
    assert _vector(firmware.elf, 16 + 0) == _symbol(firmware.elf, "uart0_rx_handler") | 1  # UART0 RX is IRQ 0
    f746 = build_firmware(compiled.out_dir, "stm32f746")
    assert _symbol(f746.elf, "mcf_core_vectors") == 0x0800_0000
    assert _vector(f746.elf, 0) == _symbol(f746.elf, "__stack_top__") == 0x2000_0000 + 320 * 1024
    assert _vector(f746.elf, 16 + 37) == _symbol(f746.elf, "usart1_handler") | 1  # USART1 is IRQ 37
    assert f746.size.arena_symbol_bytes == arena and f746.size.static_bytes <= compiled.report.runtime_static_bytes
    # The search and `compile` trust the predicted flash: it must bound what the linker really places.
    assert max(size.flash_bytes, f746.size.flash_bytes) <= compiled.report.flash_bytes


def test_boards_without_support_and_broken_images_fail_clearly(compiled, tmp_path):
    with pytest.raises(FirmwareBuildError, match="stm32h743 has no board support package yet"):
        build_firmware(compiled.out_dir, "stm32h743")
    junk = tmp_path / "junk.elf"
    junk.write_bytes(b"not an ELF file")  # QEMU loads it as a raw image and the guest runs garbage
    timeout = r"did not answer HELLO within 0.5 s on tcp:.*QEMU \(pid \d+\) is still running"
    with pytest.raises(DeviceTimeout, match=timeout), qemu_session(junk, hello_timeout=0.5):
        pass
    no_machine = dataclasses.replace(load_board("qemu-m7"), qemu=QemuTarget("no-such-machine", "cortex-m7"))
    with (
        pytest.raises(QemuError, match="exited with status 1 while starting: .*unsupported machine type"),
        qemu_session(junk, no_machine),
    ):
        pass


def test_a_model_too_big_for_the_ram_fails_at_link_time_with_the_overflow(compiled, firmware, tmp_path):
    s = firmware.size.sections
    needed = s[".data"] + s[".arena"] + s[".bss"] + STACK_RESERVE_BYTES  # ld may add up to 7 B to align the stack
    budget = 4 * 1024
    tiny = load_board("qemu-m7").with_sram(budget)
    with pytest.raises(FirmwareBudgetError, match=r"region RAM overflowed by [\d,]+ bytes") as info:
        build_firmware(compiled.out_dir, tiny, out_dir=tmp_path)
    assert needed - budget <= info.value.overflow_bytes <= needed - budget + 7 and info.value.region == "RAM"
    assert f"overflowed by {info.value.overflow_bytes:,} bytes" in str(info.value)
    assert "\n" not in str(info.value)


def test_end_to_end_on_qemu_equals_the_reference_bit_for_bit(compiled, firmware, test_images):
    manifest = firmware.manifest
    expected = reference.predict(compiled.qmodel, test_images)
    with qemu_session(firmware.elf) as session:
        hello = session.link.info
        assert hello is not None and hello.model_hash == manifest["model_hash"]
        assert (hello.board, hello.model_name, hello.protocol_version) == ("qemu-m7", "micro", protocol.VERSION)
        assert hello.arena_bytes == manifest["arena_bytes"] == compiled.plan.arena_bytes
        assert hello.input_shape == tuple(manifest["input_shape"]) and hello.num_classes == 10
        assert hello.counter_kind == protocol.CounterKind.INSTRUCTIONS and not hello.debug_commands
        run = run_images(session.link, reference.quantize_pixels(test_images), manifest)
        again = session.link.infer(reference.quantize_pixels(test_images[:1]))
        memory = session.link.memory()
        assert session.link.stats.retries == 0
    assert session.returncode == 0  # EXIT -> semihosting exit status 0
    np.testing.assert_array_equal(run.logits, expected)
    assert run.logits.dtype == np.int8 and run.logits.shape == (N_IMAGES, 10)
    assert again.logits == expected[0].tobytes() and again.count == run.counts[0]  # icount: exactly repeatable
    assert all(count > 0 for count in run.counts)
    assert 0 < memory.stack_high_water <= memory.stack_bytes == STACK_RESERVE_BYTES
    assert memory.arena_bytes == manifest["arena_bytes"]
    assert memory.static_bytes == firmware.size.static_bytes and memory.ram_bytes == 327_680
    assert 0 <= memory.flash_used_bytes - firmware.size.flash_bytes < 8 and memory.rx_overruns == 0  # alignment


class FlakyPort:
    """Wraps a port: flips a bit in the next `corrupt_writes` frames sent, and in the next `corrupt_reads` reads of
    exactly `read_size` bytes (8: the rest of a reply header; more: a reply's payload and CRC)."""

    def __init__(self, port, corrupt_writes: int = 0, corrupt_reads: int = 0, read_size: int = 8) -> None:
        self.port, self.corrupt_writes, self.corrupt_reads, self.read_size = (
            port,
            corrupt_writes,
            corrupt_reads,
            read_size,
        )

    def __getattr__(self, name):
        return getattr(self.port, name)

    def __setattr__(self, name, value):
        if name in ("timeout", "write_timeout"):
            setattr(self.port, name, value)
        else:
            object.__setattr__(self, name, value)

    def write(self, data: bytes) -> int | None:
        if self.corrupt_writes and len(data) > 12:
            self.corrupt_writes -= 1
            data = data[:12] + bytes([data[12] ^ 0x04]) + data[13:]
        return self.port.write(data)

    def read(self, size: int = 1) -> bytes:
        data = self.port.read(size)
        if self.corrupt_reads and size == self.read_size and data:
            self.corrupt_reads -= 1
            data = bytes([data[0] ^ 0x01]) + data[1:]
        return data


def test_corrupt_frames_are_rejected_and_retried_without_hanging(firmware, test_images):
    image = reference.quantize_pixels(test_images[0]).tobytes()
    with qemu_session(firmware.elf) as session:
        link = session.link
        good = link.infer(image)

        def error_for(raw: bytes) -> ErrorReply:
            link.send_raw(raw)
            frame = link.read_frame(timeout=5.0)
            assert frame.type == Msg.ERROR
            return ErrorReply.decode(frame.payload)

        frame = bytearray(encode_frame(Msg.INFER, 200, image))
        frame[300] ^= 0x80
        assert error_for(bytes(frame)).code == ErrorCode.PAYLOAD_CRC
        frame = bytearray(encode_frame(Msg.INFER, 201, image))
        frame[5] ^= 0x01  # the length: caught by the header CRC before any payload is awaited
        assert error_for(bytes(frame)).code == ErrorCode.HEADER_CRC
        assert error_for(encode_frame(Msg.INFER, 202, image)[:100]).code == ErrorCode.TIMEOUT  # cut short
        assert error_for(encode_frame(Msg.INFER, 203, image + b"\0")).code == ErrorCode.LENGTH
        with pytest.raises(DeviceRejected, match="UNKNOWN_TYPE"):
            link.request(0x42)
        with pytest.raises(ValueError, match="takes 784"):
            link.infer(image[:-1])
        with pytest.raises(TypeError, match="int8 .pixel - 128., got uint8"):
            link.infer(test_images[0])

        raw_port = link.port
        link.port = FlakyPort(raw_port, corrupt_writes=1)
        assert link.infer(image) == good and link.stats.retries == 1  # the device saw a bad CRC: host resent
        link.port = FlakyPort(raw_port, corrupt_reads=1, read_size=8)
        assert link.infer(image) == good and link.stats.retries == 2  # reply header corrupt: asked again
        link.port = FlakyPort(raw_port, corrupt_reads=1, read_size=12 + 10 + 4)
        assert link.infer(image) == good and link.stats.retries == 3  # reply payload corrupt: asked again
        link.port, link.retries = FlakyPort(raw_port, corrupt_writes=10), 3
        with pytest.raises(DeviceProtocolError, match=r"INFER to .* failed after 4 attempts: .*PAYLOAD_CRC"):
            link.infer(image)
        link.port = raw_port
        assert link.memory().rx_overruns == 0


def test_frames_sent_while_the_device_computes_wait_instead_of_overrunning(firmware, test_images):
    """A host may queue requests back to back: the device reads none of them while it computes, and its 256-byte
    receive ring cannot hold an 800-byte frame. The UART must hold the line (QEMU then stops delivering) rather
    than drop bytes."""
    images = [reference.quantize_pixels(image).tobytes() for image in test_images[:3]]
    with qemu_session(firmware.elf) as session:
        link = session.link
        expected = [link.infer(image).logits for image in images]
        link.send_raw(b"".join(encode_frame(Msg.INFER, 100 + i, image) for i, image in enumerate(images)))
        replies = [link.read_frame(timeout=30.0) for _ in images]
        assert [(frame.type, frame.seq) for frame in replies] == [
            (Msg.INFER | protocol.REPLY, 100 + i) for i in (0, 1, 2)
        ]
        got = [protocol.InferResult.decode(frame.payload).logits for frame in replies]
        assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))
        assert link.memory().rx_overruns == 0


def test_pty_transport_and_the_session_always_stops_qemu(firmware, test_images):
    image = reference.quantize_pixels(test_images[0])
    with pytest.raises(RuntimeError), qemu_session(firmware.elf, transport="pty") as session:
        assert session.link.name.startswith("/dev/pts/")
        assert session.link.infer(image).count > 0
        raise RuntimeError("the caller fails half way")
    assert not session.running() and session.returncode == 0
    with qemu_session(firmware.elf, session_timeout=1.0) as session:
        time.sleep(1.5)  # the watchdog kills QEMU
        assert not session.running()
        with pytest.raises(Exception, match="QEMU exited|cannot read|did not answer"):
            session.link.memory()


@pytest.mark.parametrize(
    ("what", "address", "write"),
    [
        ("first byte past the RAM budget", 0x2005_0000, False),
        ("write to flash", 0x0000_0100, True),
        ("read past the flash", 0x0010_0000, False),
    ],
)
def test_memory_outside_the_budget_faults_and_the_report_reaches_the_host(debug_firmware, what, address, write):
    with qemu_session(debug_firmware.elf) as session:
        link = session.link
        assert link.info is not None and link.info.debug_commands
        assert link.peek(0x2004_FFFC) == 0 or True  # the last word of the budget is readable
        link.poke(0x2004_FFF0, 0x1234_5678)
        assert link.peek(0x2004_FFF0) == 0x1234_5678
        with pytest.raises(DeviceFault, match=rf"MemManage \(DACCVIOL, MMARVALID\) at address 0x{address:08x}") as info:
            link.poke(address, 1) if write else link.peek(address)
        assert session.wait() == 64 + 4  # the firmware exits with 64 + the exception number
    report = info.value.report
    assert report.exception == 4 and report.mmfar == address and report.fault_address == address
    assert debug_firmware.board.flash_region.origin <= report.pc < debug_firmware.board.flash_region.end, what
