"""Errors of the device layer: building firmware, running QEMU, talking to a board. All are one-line messages."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcuformer.errors import McuformerError

if TYPE_CHECKING:
    from mcuformer.device.protocol import FaultReport


class FirmwareBuildError(McuformerError):
    """The cross compiler or the linker failed (the message carries the first lines of its output)."""


class FirmwareBudgetError(FirmwareBuildError):
    """The firmware does not fit the board: the linker reported a region overflow."""

    def __init__(self, message: str, region: str, overflow_bytes: int) -> None:
        super().__init__(message)
        self.region = region
        self.overflow_bytes = overflow_bytes


class DeviceError(McuformerError):
    """Talking to the device failed."""


class DeviceTimeout(DeviceError):
    """The device did not answer in time."""


class DeviceProtocolError(DeviceError):
    """The device answered with something the protocol does not allow, or kept failing CRC checks."""


class DeviceRestarted(DeviceError):
    """The device announced a restart (BOOT) while a request was in flight; the link has handshaken again."""


class DeviceRejected(DeviceError):
    """The device answered a request with an error frame that retrying does not fix."""

    def __init__(self, message: str, code: int, detail: int) -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail


class DeviceFault(DeviceError):
    """The device took a fault (HardFault, MemManage, ...) and reported it before halting."""

    def __init__(self, message: str, report: FaultReport) -> None:
        super().__init__(message)
        self.report = report


class QemuError(DeviceError):
    """QEMU could not be started or died."""
