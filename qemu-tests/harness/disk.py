"""The disk image seen from outside: GPT partitions (``sfdisk -J``), FAT and ext4 files.

Nothing is mounted: mtools reads and writes a FAT filesystem at a byte offset inside the image
(``-i IMAGE@@OFFSET``), which is how a firmware that only knows FAT sees the card; debugfs
reads an ext4 filesystem at an offset (``IMAGE?offset=N``), so a test can inspect what the
guest left on /data.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fleetcore.errors import CommandError
from fleetcore.run import run
from harness.errors import DiskError

# mtools refuses FAT images whose geometry does not match a floppy's unless told not to check.
MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1", "MTOOLS_NO_VFAT": "0"}


@dataclass(frozen=True)
class Partition:
    number: int
    label: str
    start: int
    """Byte offset of the partition in the image."""
    size: int
    """Size in bytes."""


def partitions(image: Path) -> list[Partition]:
    """The GPT partitions of ``image``, in table order."""
    try:
        out = run(["sfdisk", "-J", image]).stdout
        table = json.loads(out)["partitiontable"]
    except (CommandError, ValueError, KeyError) as err:
        raise DiskError(f"{image}: no readable partition table") from err
    sector = int(table.get("sectorsize", 512))
    found = []
    for entry in table.get("partitions", []):
        node = str(entry["node"])
        number = int(node[len(str(image)) :].lstrip("p"))
        found.append(
            Partition(
                number=number,
                label=str(entry.get("name", "")),
                start=int(entry["start"]) * sector,
                size=int(entry["size"]) * sector,
            )
        )
    return found


def partition(image: Path, *, number: int | None = None, label: str | None = None) -> Partition:
    """One partition of ``image``, by number or by PARTLABEL."""
    for part in partitions(image):
        if part.number == number or (label is not None and part.label == label):
            return part
    wanted = f"number {number}" if number is not None else f"PARTLABEL {label}"
    raise DiskError(f"{image}: no partition with {wanted}")


class FatVolume:
    """A FAT filesystem inside a disk image, read and written with mtools."""

    def __init__(self, image: Path, part: Partition) -> None:
        self.image = image
        self.part = part
        self._drive = f"{image}@@{part.start}"

    def _mtools(self, argv: list[str | Path], *, check: bool = True) -> bytes:
        try:
            return run([argv[0], "-i", self._drive, *argv[1:]], env=MTOOLS_ENV, check=check).stdout
        except CommandError as err:
            raise DiskError(f"partition {self.part.number} ({self.part.label}): {err}") from err

    def exists(self, path: str) -> bool:
        probe = run(["mdir", "-b", "-i", self._drive, f"::/{path}"], env=MTOOLS_ENV, check=False)
        return probe.returncode == 0

    def read(self, path: str) -> bytes | None:
        """The content of ``path``, or None when it does not exist."""
        if not self.exists(path):
            return None
        return self._mtools(["mcopy", "-n", f"::/{path}", "-"])

    def copy_out(self, path: str, dest: Path) -> None:
        self._mtools(["mcopy", "-n", "-o", f"::/{path}", dest])

    def list(self, directory: str = "") -> list[str]:
        """Names of the entries directly in ``directory``."""
        out = self._mtools(["mdir", "-b", f"::/{directory}"], check=False).decode()
        names = []
        for line in out.splitlines():
            entry = line.strip().rstrip("/")
            if entry.startswith("::/"):
                names.append(entry.rsplit("/", 1)[-1])
        return names

    def mkdir(self, directory: str) -> None:
        parts = [p for p in directory.split("/") if p]
        for depth in range(1, len(parts) + 1):
            sub = "/".join(parts[:depth])
            if not self.exists(sub):
                self._mtools(["mmd", f"::/{sub}"])

    def write(self, path: str, data: bytes) -> None:
        """Create or replace ``path`` (parent directories are created)."""
        parent = path.rpartition("/")[0]
        if parent:
            self.mkdir(parent)
        with tempfile.TemporaryDirectory(prefix="fat-write-") as tmp:
            local = Path(tmp) / "data"
            local.write_bytes(data)
            self._mtools(["mcopy", "-o", local, f"::/{path}"])

    def put(self, local: Path, path: str) -> None:
        """Copy the host file ``local`` to ``path``."""
        parent = path.rpartition("/")[0]
        if parent:
            self.mkdir(parent)
        self._mtools(["mcopy", "-o", local, f"::/{path}"])

    def check(self) -> None:
        """Check the filesystem read-only (``fsck.fat -n`` on a copy of the partition): a
        cross-linked or lost cluster, a free cluster in a chain, a bad directory entry.

        The copy's dirty bit is cleared first: Linux sets it while the volume is mounted, so
        every power cut leaves it set, and the Pi firmware ignores it; what counts is whether
        the FAT, the directories and the files agree.
        """
        with tempfile.TemporaryDirectory(prefix="fat-check-") as tmp:
            copy = Path(tmp) / "partition.vfat"
            _copy_partition(self.image, self.part, copy)
            _clear_dirty_bit(copy)
            found = run(["fsck.fat", "-n", copy], check=False)
        if found.returncode != 0:
            report = (found.stdout + found.stderr).decode(errors="replace")
            where = f"partition {self.part.number} ({self.part.label})"
            raise DiskError(f"{where} is damaged:\n{report}")

    def delete(self, path: str) -> bool:
        """Remove ``path``; return whether it existed."""
        if not self.exists(path):
            return False
        self._mtools(["mdel", f"::/{path}"])
        return True


def _clear_dirty_bit(volume: Path) -> None:
    """Clear the "not cleanly unmounted" bit of a FAT boot sector (FAT12/16: byte 0x25,
    FAT32: byte 0x41, bit 0; FAT32 when the 16-bit FAT size at byte 22 is zero)."""
    with volume.open("r+b") as handle:
        boot = handle.read(512)
        state = 0x41 if int.from_bytes(boot[22:24], "little") == 0 else 0x25
        handle.seek(state)
        handle.write(bytes([boot[state] & 0xFE]))


def fat_volume(image: Path, *, number: int | None = None, label: str | None = None) -> FatVolume:
    return FatVolume(image, partition(image, number=number, label=label))


class Ext4Volume:
    """An ext4 filesystem inside a disk image, read with debugfs (the image is not changed).

    After a power cut the latest metadata can still be only in the journal (the guest's
    fsync commits it there; the checkpoint to its home blocks comes later), and debugfs does
    not replay the journal. So each read works on a copy of the partition whose journal
    ``e2fsck -E journal_only`` replayed, which is what the next mount would see.
    """

    def __init__(self, image: Path, part: Partition) -> None:
        self.image = image
        self.part = part

    def read(self, path: str) -> bytes | None:
        """The content of ``path`` (absolute in the filesystem), or None when it is missing."""
        with tempfile.TemporaryDirectory(prefix="ext4-read-") as tmp:
            copy = Path(tmp) / "partition.ext4"
            _copy_partition(self.image, self.part, copy)
            replay = run(["e2fsck", "-E", "journal_only", "-y", copy], check=False)
            if replay.returncode not in (0, 1):  # 1: the journal was replayed
                report = (replay.stdout + replay.stderr).decode(errors="replace")
                raise DiskError(f"partition {self.part.number} ({self.part.label}): {report}")
            # debugfs exits 0 whatever the request did; a lookup failure shows only on stderr.
            _, stat_err = self._debugfs(copy, f"stat {path}")
            if "not found" in stat_err or "File not found" in stat_err:
                return None
            data, _ = self._debugfs(copy, f"cat {path}")
            return data

    def _debugfs(self, device: Path, request: str) -> tuple[bytes, str]:
        try:
            proc = run(["debugfs", "-R", request, device])
        except CommandError as err:
            raise DiskError(f"partition {self.part.number} ({self.part.label}): {err}") from err
        return proc.stdout, proc.stderr.decode(errors="replace")


def _copy_partition(image: Path, part: Partition, dest: Path) -> None:
    """Copy one partition of ``image`` to the file ``dest``, keeping runs of zeros sparse."""
    with image.open("rb") as src, dest.open("wb") as dst:
        src.seek(part.start)
        left = part.size
        while left:
            block = src.read(min(left, 1 << 20))
            if not block:
                break
            if block.count(0) == len(block):
                dst.seek(len(block), 1)
            else:
                dst.write(block)
            left -= len(block)
        dst.truncate(part.size)


def ext4_volume(image: Path, *, label: str) -> Ext4Volume:
    return Ext4Volume(image, partition(image, label=label))
