"""Which board this is: the device tree's model and compatible strings and the revision code.

The firmware fills ``/proc/device-tree/model`` (``Raspberry Pi 4 Model B Rev 1.4``),
``compatible`` (``raspberrypi,4-model-b`` then ``brcm,bcm2711``, NUL-separated) and
``system/linux,revision`` (the revision code, 4 bytes big-endian; ``/proc/cpuinfo``'s
``Revision`` line holds the same code). The revision code is authoritative where it is
new-style (bit 23 set): its type field tells a CM4 from a Pi 4 and a Zero 2 W from a Pi 3,
which the model string only tells in prose. Its fields follow the Raspberry Pi
documentation's "Revision codes" page (``NOQuuuWuFMMMCCCCPPPPTTTTTTTTRRRR``).

Every value read here is firmware-provided but still parsed defensively: a missing or
malformed file gives ``None`` fields, never an exception. The board table (families, tryboot
support, boot files) is ``fleetcore.boards``, shared with the image builder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from fleetcore.boards import (
    BY_COMPATIBLE,
    BY_TYPE,
    TRYBOOT_AB_BOARDS,
    Board,
    family_of,
    unsupported_reason,
)
from fleetcore.release import Hardware
from fleetcore.wire import BoardReport
from updater.errors import BoardRefused

_MAX_READ = 4096
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
            board=BY_TYPE.get(type_code, Board.UNKNOWN),
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
        """The RAM the revision code declares, if that code describes this board (a garbled
        code whose type field names no board, or another one, is not believed)."""
        if self.revision is None or self.revision.board is not self.board:
            return None
        return self.revision.memory_mib

    @property
    def family(self) -> Hardware | None:
        """The release family this board installs; None where it cannot run A/B updates."""
        return family_of(self.board)

    @property
    def is_raspberry_pi(self) -> bool:
        """Firmware of some Raspberry Pi, known or not (a virt machine or a test tree is not)."""
        return self.board is not Board.QEMU and (
            self.board is not Board.UNKNOWN
            or self.model.startswith("Raspberry Pi")
            or self.revision is not None
            or any(c.startswith("raspberrypi,") for c in self.compatible)
        )


def resolve_hardware(info: BoardInfo, configured: Hardware | None) -> Hardware:
    """The release family this device installs, or :class:`BoardRefused` saying why none.

    A Raspberry Pi's own firmware decides: updater.yaml's ``hardware`` may only name the
    family the board belongs to (a card moved from a Pi 4 into a Pi 5 must not go on
    installing pi4 releases). Boards without tryboot A/B (Zero 2 W, Pi 3, CM4S) and Pis this
    updater does not know are refused. Only where no Raspberry Pi firmware is seen (the QEMU
    virt machine, a test's empty device tree) does the configuration choose, ``qemu`` if unset.
    """
    if not info.is_raspberry_pi:
        return configured or Hardware.QEMU
    family = info.family
    described = info.model or info.board.value
    if family is None:
        if info.board is Board.UNKNOWN:
            code = f" (revision {info.revision.code:06x})" if info.revision else ""
            raise BoardRefused(
                f"{described}{code} is not a board this updater knows; it refuses to run A/B "
                "updates on it",
                hint="supported: Pi 4, Pi 400, CM4, Pi 5, Pi 500, CM5 (docs/boards.md)",
            )
        raise BoardRefused(
            f"{unsupported_reason(info.board, info.model)}; this updater refuses to run A/B "
            "updates on it",
            hint="run the fleet on a Pi 4, Pi 400, CM4, Pi 5, Pi 500 or CM5 (docs/boards.md)",
        )
    if configured is not None and configured is not family:
        raise BoardRefused(
            f"updater.yaml sets hardware: {configured.value}, but this is a {described} "
            f"({family.value} family); no {configured.value} release is installed here",
            hint=f"remove hardware from updater.yaml or set it to {family.value}",
        )
    return family


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
        board = BY_COMPATIBLE.get(compatible[0], Board.UNKNOWN)
    return BoardInfo(board, model, compatible, revision, read_serial(device_tree, proc))


def board_report(info: BoardInfo) -> BoardReport:
    """What the heartbeat says of the board (model cut to the wire's 128 characters)."""
    return BoardReport(
        board=info.board.value,
        model=info.model[:128] or None,
        revision=f"{info.revision.code:06x}" if info.revision else None,
        memory_mib=info.memory_mib,
    )
