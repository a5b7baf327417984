"""The A/B disk layout: partitions, their sizes and ids, and the sfdisk script that makes them.

Pure: computes offsets and text, touches no file. Partition and filesystem ids derive from a
seed (release version and SOURCE_DATE_EPOCH) so that equal inputs give an equal disk.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from fleetcore import verity
from fleetcore.layout import (
    CONFIG_LABEL,
    DATA_LABEL,
    LABELS,
    Slot,
    boot_label,
    system_label,
)
from image.encrypteddata import ARG as DATA_ARG
from image.errors import InputError, LayoutError

MIB = 2**20
SECTOR = 512
# GPT needs 34 sectors at the start and 33 at the end; a 1 MiB grain keeps every partition
# aligned to SD-card erase blocks.
ALIGN = MIB


class PartType(StrEnum):
    """GPT partition type GUIDs."""

    BASIC_DATA = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
    LINUX_ROOT_ARM64 = "B921B045-1DF0-41C3-AF44-4C6F280D3FAE"
    LINUX_FS = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"


class Sizes(BaseModel):
    """Partition sizes in MiB; boot and system apply to both slots."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    config: int = Field(default=32, ge=2)
    boot: int = Field(default=256, ge=8)
    system: int = Field(default=1536, ge=8)
    data: int = Field(default=256, ge=8)

    @classmethod
    def parse(cls, text: str) -> Sizes:
        """Parse ``boot=128M,system=1G`` (suffix M or G, MiB without one)."""
        values: dict[str, int] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            match = re.fullmatch(r"(\w+)=(\d+)([MG]?)", item)
            if not match:
                raise InputError(f"invalid size {item!r}: expected NAME=SIZE such as system=1G")
            name, number, unit = match.groups()
            if name not in cls.model_fields:
                known = ", ".join(cls.model_fields)
                raise InputError(f"unknown partition {name!r} in sizes: expected one of {known}")
            values[name] = int(number) * (1024 if unit == "G" else 1)
        try:
            return cls(**values)
        except ValueError as err:
            raise InputError(f"invalid sizes {text!r}: {err}") from err


class Partition(BaseModel):
    model_config = ConfigDict(frozen=True)

    number: int
    label: str
    type: PartType
    start: int = Field(description="byte offset on the disk")
    size: int = Field(description="bytes")
    uuid: str

    @property
    def end(self) -> int:
        return self.start + self.size


class Layout(BaseModel):
    model_config = ConfigDict(frozen=True)

    disk_size: int
    disk_uuid: str
    partitions: tuple[Partition, ...]

    def get(self, label: str) -> Partition:
        for part in self.partitions:
            if part.label == label:
                return part
        raise KeyError(label)


def derived_uuid(seed: str, name: str) -> str:
    """A stable UUID for ``name`` within one build."""
    digest = hashlib.sha256(f"{seed}\0{name}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def plan(sizes: Sizes, seed: str) -> Layout:
    """The six partitions in disk order, each aligned to 1 MiB."""
    wanted = [
        (CONFIG_LABEL, PartType.BASIC_DATA, sizes.config),
        (boot_label(Slot.A), PartType.BASIC_DATA, sizes.boot),
        (boot_label(Slot.B), PartType.BASIC_DATA, sizes.boot),
        (system_label(Slot.A), PartType.LINUX_ROOT_ARM64, sizes.system),
        (system_label(Slot.B), PartType.LINUX_ROOT_ARM64, sizes.system),
        (DATA_LABEL, PartType.LINUX_FS, sizes.data),
    ]
    assert tuple(label for label, _, _ in wanted) == LABELS
    parts, pos = [], ALIGN
    for number, (label, ptype, mib) in enumerate(wanted, start=1):
        parts.append(
            Partition(
                number=number,
                label=label,
                type=ptype,
                start=pos,
                size=mib * MIB,
                uuid=derived_uuid(seed, f"part:{label}"),
            )
        )
        pos += mib * MIB
    return Layout(
        disk_size=pos + ALIGN, disk_uuid=derived_uuid(seed, "disk"), partitions=tuple(parts)
    )


def sfdisk_script(layout: Layout) -> str:
    """Input for ``sfdisk`` that writes exactly this GPT."""
    lines = [
        "label: gpt",
        f"label-id: {layout.disk_uuid.upper()}",
        "unit: sectors",
        f"first-lba: {ALIGN // SECTOR}",
        "",
    ]
    for part in layout.partitions:
        lines.append(
            f"start={part.start // SECTOR}, size={part.size // SECTOR}, type={part.type.value}, "
            f'uuid={part.uuid.upper()}, name="{part.label}"'
        )
    return "\n".join(lines) + "\n"


# Kernel arguments the builder owns: they name the root, how to mount and how to verify it.
_OWNED_ARGS = ("root=", "rootfstype=", "rootflags=", "init=", f"{verity.ARG}=", f"{DATA_ARG}=")
_OWNED_FLAGS = {"ro", "rw", "rootwait", "fsck.repair=yes"}
# arm64's COMMAND_LINE_SIZE is 2048 bytes, and the Pi firmware prepends its own arguments
# (memory layout, serial, video: some 300-600 bytes); cmdline.txt keeps clear of that.
CMDLINE_MAX = 1024


def cmdline_txt(base: str, slot: Slot, system_fstype: str, extra: Sequence[str] = ()) -> str:
    """The slot's cmdline.txt: the rootfs's own arguments plus the root of this slot (and
    ``extra``, the root's verity arguments)."""
    kept = [
        arg for arg in base.split() if not arg.startswith(_OWNED_ARGS) and arg not in _OWNED_FLAGS
    ]
    own = [f"root=PARTLABEL={system_label(slot)}", f"rootfstype={system_fstype}", "ro", "rootwait"]
    text = " ".join(kept + own + list(extra)) + "\n"
    if len(text.encode()) > CMDLINE_MAX:
        raise LayoutError(
            f"cmdline.txt for slot {slot} would be {len(text.encode())} bytes, above the "
            f"{CMDLINE_MAX} the kernel has room for beside the firmware's own arguments",
            hint="shorten the rootfs's boot/firmware/cmdline.txt",
        )
    return text
