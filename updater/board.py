"""Which board this is: the device tree's model and compatible strings and the revision code.

The firmware fills ``/proc/device-tree/model`` (``Raspberry Pi 4 Model B Rev 1.4``),
``compatible`` (``raspberrypi,4-model-b`` then ``brcm,bcm2711``, NUL-separated) and
``system/linux,revision`` (the revision code, 4 bytes big-endian; ``/proc/cpuinfo``'s
``Revision`` line holds the same code). The revision code is authoritative where it is
new-style (bit 23 set): its type field tells a CM4 from a Pi 4 and a Zero 2 W from a Pi 3,
which the model string only tells in prose. Its fields follow the Raspberry Pi
documentation's "Revision codes" page (``NOQuuuWuFMMMCCCCPPPPTTTTTTTTRRRR``).

Every value read here is firmware-provided but still parsed defensively: a missing or
malformed file gives ``None`` fields, never an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

_MAX_READ = 4096


class Board(StrEnum):
    """Board families the fleet knows; ``supports_tryboot_ab`` says which it can run."""

    PI4 = "pi4"
    PI400 = "pi400"
    CM4 = "cm4"
    CM4S = "cm4s"
    PI5 = "pi5"
    PI500 = "pi500"
    CM5 = "cm5"
    ZERO2W = "zero2w"
    PI3 = "pi3"
    QEMU = "qemu"
    UNKNOWN = "unknown"


# The revision code's type field (bits 4-11) for the boards above.
_TYPES: dict[int, Board] = {
    0x08: Board.PI3,  # 3B
    0x0A: Board.PI3,  # CM3
    0x0D: Board.PI3,  # 3B+
    0x0E: Board.PI3,  # 3A+
    0x10: Board.PI3,  # CM3+
    0x11: Board.PI4,
    0x12: Board.ZERO2W,
    0x13: Board.PI400,
    0x14: Board.CM4,
    0x15: Board.CM4S,
    0x17: Board.PI5,
    0x18: Board.CM5,
    0x19: Board.PI500,
    0x1A: Board.CM5,  # CM5 Lite
}
_MEMORY_MIB = {0: 256, 1: 512, 2: 1024, 3: 2048, 4: 4096, 5: 8192, 6: 16384}
_PROCESSORS = {0: "BCM2835", 1: "BCM2836", 2: "BCM2837", 3: "BCM2711", 4: "BCM2712"}
_MANUFACTURERS = {
    0: "Sony UK",
    1: "Egoman",
    2: "Embest",
    3: "Sony Japan",
    4: "Embest",
    5: "Stadium",
}
# The EEPROM bootloader (Pi 4 and Pi 5 families) reads autoboot.txt with tryboot_a_b; the
# CM4S boots the older way (no EEPROM), like the Pi 3 and the Zero 2 W.
TRYBOOT_AB_BOARDS = frozenset(
    {Board.PI4, Board.PI400, Board.CM4, Board.PI5, Board.PI500, Board.CM5}
)
# The first compatible string of each board's device tree, for boards without a revision.
_COMPATIBLE: dict[str, Board] = {
    "raspberrypi,4-model-b": Board.PI4,
    "raspberrypi,400": Board.PI400,
    "raspberrypi,4-compute-module": Board.CM4,
    "raspberrypi,5-model-b": Board.PI5,
    "raspberrypi,500": Board.PI500,
    "raspberrypi,5-compute-module": Board.CM5,
    "raspberrypi,4s-compute-module": Board.CM4S,
    "raspberrypi,model-zero-2-w": Board.ZERO2W,
    "raspberrypi,3-plus-compute-module": Board.PI3,
    "raspberrypi,3-compute-module": Board.PI3,
    "raspberrypi,3-model-a-plus": Board.PI3,
    "raspberrypi,3-model-b-plus": Board.PI3,
    "raspberrypi,3-model-b": Board.PI3,
    "linux,dummy-virt": Board.QEMU,
}
_CPUINFO_REVISION = re.compile(r"^Revision\s*:\s*([0-9a-fA-F]{1,8})\s*$", re.MULTILINE)
_CPUINFO_SERIAL = re.compile(r"^Serial\s*:\s*([0-9a-fA-F]{1,32})\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Revision:
    """A new-style revision code, decoded."""

    code: int
    board: Board
    type_code: int
    memory_mib: int | None
    processor: str | None
    manufacturer: str | None
    pcb_revision: str

    @classmethod
    def decode(cls, code: int) -> Revision | None:
        """The fields of a new-style code; ``None`` for an old-style (pre-Pi 2) one."""
        if not code >> 23 & 1:
            return None
        type_code = code >> 4 & 0xFF
        return cls(
            code=code,
            board=_TYPES.get(type_code, Board.UNKNOWN),
            type_code=type_code,
            memory_mib=_MEMORY_MIB.get(code >> 20 & 0x7),
            processor=_PROCESSORS.get(code >> 12 & 0xF),
            manufacturer=_MANUFACTURERS.get(code >> 16 & 0xF),
            pcb_revision=f"1.{code & 0xF}",
        )


@dataclass(frozen=True)
class BoardInfo:
    board: Board
    model: str
    compatible: tuple[str, ...]
    revision: Revision | None
    serial: str | None

    @property
    def supports_tryboot_ab(self) -> bool:
        return self.board in TRYBOOT_AB_BOARDS or self.board is Board.QEMU

    @property
    def memory_mib(self) -> int | None:
        return self.revision.memory_mib if self.revision else None


def _read(path: Path) -> bytes | None:
    try:
        with path.open("rb") as handle:
            return handle.read(_MAX_READ)
    except OSError:
        return None


def _text(data: bytes | None) -> str:
    return (data or b"").split(b"\0", 1)[0].decode("ascii", "replace").strip()


def read_revision(device_tree: Path, proc: Path) -> int | None:
    """The revision code from the device tree, else from ``/proc/cpuinfo``."""
    raw = _read(device_tree / "system" / "linux,revision")
    if raw is not None and len(raw) == 4:
        return int.from_bytes(raw, "big")
    match = _CPUINFO_REVISION.search(_text_all(_read(proc / "cpuinfo")))
    return int(match.group(1), 16) if match else None


def read_serial(device_tree: Path, proc: Path) -> str | None:
    """The board's serial number (lower-case hex), or ``None`` when it has none."""
    serial = _text(_read(device_tree / "serial-number")).lower()
    if not re.fullmatch(r"[0-9a-f]{1,32}", serial):
        match = _CPUINFO_SERIAL.search(_text_all(_read(proc / "cpuinfo")))
        serial = match.group(1).lower() if match else ""
    if not serial or not serial.strip("0"):
        return None
    return serial


def _text_all(data: bytes | None) -> str:
    return (data or b"").decode("ascii", "replace")


def detect(device_tree: Path, proc: Path) -> BoardInfo:
    """What the firmware says this board is."""
    model = _text(_read(device_tree / "model"))
    compatible = tuple(
        part.decode("ascii", "replace")
        for part in (_read(device_tree / "compatible") or b"").split(b"\0")
        if part
    )
    code = read_revision(device_tree, proc)
    revision = Revision.decode(code) if code is not None else None
    board = revision.board if revision else Board.UNKNOWN
    if board is Board.UNKNOWN and compatible:
        board = _COMPATIBLE.get(compatible[0], Board.UNKNOWN)
    return BoardInfo(board, model, compatible, revision, read_serial(device_tree, proc))
