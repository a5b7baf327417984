"""The Raspberry Pi boards the fleet knows: their family, tryboot A/B support and boot files.

One table, read by the device (``updater.board``: which board this is, and may it run A/B
updates) and by the image builder (``image.bootfiles``: which boards an image's boot files
serve). A release targets a *family* (``fleetcore.release.Hardware``), never a single board:
an image for ``pi4`` must boot a Pi 4 B, a Pi 400 and a CM4 alike, so it carries the boot
files of all three.

Facts, from the Raspberry Pi documentation (``raspberrypi/documentation``):

- the revision code's type field (bits 4-11), in the "Revision codes" table;
- the device tree's first ``compatible`` string of each board;
- ``autoboot.txt`` with ``tryboot_a_b=1`` is documented for the EEPROM bootloader of the
  Pi 4, Pi 400, CM4, Pi 5, Pi 500 and CM5 only; the Pi 3 family, the Zero 2 W and the CM4S
  boot from ``bootcode.bin``/``start.elf`` with no EEPROM stage, and the fleet refuses them
  (docs/boards.md);
- config.txt's model filters (``[pi4]`` is seen by the Pi 4 B, Pi 400, CM4 and CM4S;
  ``[pi400]`` and ``[cm4]`` by one board each, and likewise ``[pi5]``, ``[pi500]``, ``[cm5]``);
- the Pi 4 family loads ``start4.elf``/``fixup4.dat`` from the boot partition; the Pi 5
  family's firmware is in its EEPROM and needs none (a partition counts as bootable there when
  it has a ``config.txt``);
- the default kernel is ``kernel8.img`` on a 64-bit Pi 4 and ``kernel_2712.img`` (else
  ``kernel8.img``) on a Pi 5, unless config.txt names one with ``kernel=``;
- with ``upstream_kernel=1`` (Debian's raspi-firmware writes it) the firmware prefers the
  upstream Linux name of a board's DTB, and loads the downstream one when that is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from fleetcore.release import Hardware


class Board(StrEnum):
    """A board as the device detects it; ``SPECS`` says which family it belongs to."""

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


@dataclass(frozen=True)
class BoardSpec:
    board: Board
    name: str
    # The family a release names in its ``hardware``; None: no tryboot A/B, not supported.
    family: Hardware | None
    type_codes: tuple[int, ...]
    compatible: tuple[str, ...]
    # config.txt model filters this board sees (its sections apply to it).
    filters: tuple[str, ...] = ()
    # Device trees the firmware loads for it (downstream names; a glob where a board has
    # several carrier-board variants), and the upstream names it prefers under
    # upstream_kernel=1.
    dtbs: tuple[str, ...] = ()
    upstream_dtbs: tuple[str, ...] = ()


SPECS: tuple[BoardSpec, ...] = (
    BoardSpec(
        Board.PI4,
        "Raspberry Pi 4 Model B",
        Hardware.PI4,
        (0x11,),
        ("raspberrypi,4-model-b",),
        ("pi4",),
        ("bcm2711-rpi-4-b.dtb",),
    ),
    BoardSpec(
        Board.PI400,
        "Raspberry Pi 400",
        Hardware.PI4,
        (0x13,),
        ("raspberrypi,400",),
        ("pi4", "pi400"),
        ("bcm2711-rpi-400.dtb",),
    ),
    BoardSpec(
        Board.CM4,
        "Raspberry Pi Compute Module 4",
        Hardware.PI4,
        (0x14,),
        ("raspberrypi,4-compute-module",),
        ("pi4", "cm4"),
        ("bcm2711-rpi-cm4.dtb",),
        ("bcm2711-rpi-cm4-io.dtb",),
    ),
    BoardSpec(
        Board.PI5,
        "Raspberry Pi 5",
        Hardware.PI5,
        (0x17,),
        ("raspberrypi,5-model-b",),
        ("pi5",),
        ("bcm2712-rpi-5-b.dtb",),
    ),
    BoardSpec(
        Board.PI500,
        "Raspberry Pi 500",
        Hardware.PI5,
        (0x19,),
        ("raspberrypi,500",),
        ("pi5", "pi500"),
        ("bcm2712-rpi-500.dtb",),
    ),
    BoardSpec(
        Board.CM5,
        "Raspberry Pi Compute Module 5",
        Hardware.PI5,
        (0x18, 0x1A),  # CM5, CM5 Lite
        ("raspberrypi,5-compute-module",),
        ("pi5", "cm5"),
        ("bcm2712-rpi-cm5*.dtb",),
    ),
    BoardSpec(
        Board.CM4S,
        "Raspberry Pi Compute Module 4S",
        None,
        (0x15,),
        ("raspberrypi,4s-compute-module",),
        ("pi4", "cm4s"),
    ),
    BoardSpec(
        Board.ZERO2W,
        "Raspberry Pi Zero 2 W",
        None,
        (0x12,),
        ("raspberrypi,model-zero-2-w",),
        ("pi0", "pi0w", "pi02"),
    ),
    BoardSpec(
        Board.PI3,
        "Raspberry Pi 3",
        None,
        (0x08, 0x0A, 0x0D, 0x0E, 0x10),  # 3B, CM3, 3B+, 3A+, CM3+
        (
            "raspberrypi,3-model-b",
            "raspberrypi,3-compute-module",
            "raspberrypi,3-model-b-plus",
            "raspberrypi,3-model-a-plus",
            "raspberrypi,3-plus-compute-module",
        ),
        ("pi3",),
    ),
)
BY_BOARD: dict[Board, BoardSpec] = {spec.board: spec for spec in SPECS}
BY_TYPE: dict[int, Board] = {code: spec.board for spec in SPECS for code in spec.type_codes}
BY_COMPATIBLE: dict[str, Board] = {
    **{compatible: spec.board for spec in SPECS for compatible in spec.compatible},
    "linux,dummy-virt": Board.QEMU,
}
TRYBOOT_AB_BOARDS = frozenset(spec.board for spec in SPECS if spec.family is not None)
PI_FAMILIES = (Hardware.PI4, Hardware.PI5)
# Firmware files each family loads from the boot partition, whatever config.txt says.
FAMILY_FIRMWARE: dict[Hardware, tuple[str, ...]] = {
    Hardware.PI4: ("start4.elf", "fixup4.dat"),
    Hardware.PI5: (),
}
# The kernel each family loads when config.txt names none (the first present wins).
DEFAULT_KERNELS: dict[Hardware, tuple[str, ...]] = {
    Hardware.PI4: ("kernel8.img",),
    Hardware.PI5: ("kernel_2712.img", "kernel8.img"),
}


def family_of(board: Board) -> Hardware | None:
    """The release family a board installs; None for boards without tryboot A/B."""
    if board is Board.QEMU:
        return Hardware.QEMU
    spec = BY_BOARD.get(board)
    return spec.family if spec else None


def boards_of(family: Hardware) -> tuple[BoardSpec, ...]:
    """Every board an image for ``family`` must boot."""
    return tuple(spec for spec in SPECS if spec.family is family)


def unsupported_reason(board: Board, model: str = "") -> str:
    """Why ``board`` cannot run the fleet's A/B image (for errors at assemble and on the device)."""
    spec = BY_BOARD.get(board)
    what = model or (spec.name if spec else f"board {board.value}")
    return (
        f"{what} has no tryboot A/B boot: Raspberry Pi documents autoboot.txt with "
        "tryboot_a_b=1 for the EEPROM bootloader of the Pi 4, Pi 400, CM4, Pi 5, Pi 500 and CM5"
    )
