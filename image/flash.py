"""``fleet-image flash``: write a disk image plus its first-boot fleet.yaml, then verify.

The image is first personalised as a sparse copy (fleet.yaml goes into the config partition
with mtools, no mount), then written block by block with a progress bar, flushed, dropped from
the page cache and read back against the hashes of what was written.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fleetcore.errors import CommandError, FormatError
from fleetcore.firstboot import FILENAME, dump_firstboot, load_firstboot
from fleetcore.layout import CONFIG_LABEL, Slot, system_label
from fleetcore.run import run
from image import blockdev, disk
from image.errors import FlashError, InputError
from image.layout import SECTOR
from image.progress import Bar

BLOCK = 4 * 2**20


def flash(image: Path, *, config_file: Path, device: Path | None, out: Path | None) -> None:
    """Write ``image`` personalised with ``config_file`` to ``device`` or the file ``out``."""
    if not image.is_file():
        raise InputError(f"disk image {image} does not exist")
    try:
        first = load_firstboot(config_file.read_bytes())
    except OSError as err:
        raise InputError(f"cannot read {config_file}: {err.strerror}") from err
    except FormatError as err:
        raise InputError(str(err)) from err
    if first.enrollment_token is None:
        raise InputError(f"{config_file} has no enrollment_token: the device could not enrol")
    firstboot = dump_firstboot(first)
    table = _partitions(image)
    if device is not None:
        size = blockdev.check_target(device)
        if size < image.stat().st_size:
            raise FlashError(f"{device} holds {size} bytes, the image needs {image.stat().st_size}")
    with _personalised(image, table[CONFIG_LABEL], firstboot) as personal:
        if out is not None:
            tmp = out.with_name(f".{out.name}.partial")
            try:
                # 0600 from its creation: the image holds the enrolment token and the Wi-Fi key.
                tmp.unlink(missing_ok=True)
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                # Sparse, like the personalised copy: a plain copy would write every hole.
                run(["cp", "--sparse=always", "--reflink=auto", personal, tmp])
                tmp.replace(out)
            finally:
                tmp.unlink(missing_ok=True)
            return
        assert device is not None
        skip = table[system_label(Slot.B)]
        _write_and_verify(personal, device, skip)


def _partitions(image: Path) -> dict[str, tuple[int, int]]:
    """PARTLABEL -> (byte offset, byte size), checking this is a fleet disk image."""
    try:
        parts = disk.read_table(image).get("partitions", [])
    except CommandError as err:
        raise InputError(f"{image} has no readable partition table: {err}") from err
    table = {p.get("name", ""): (p["start"] * SECTOR, p["size"] * SECTOR) for p in parts}
    if CONFIG_LABEL not in table or system_label(Slot.B) not in table:
        raise InputError(f"{image} is not a Metrica Fleet disk image (no config partition)")
    return table


@contextlib.contextmanager
def _personalised(image: Path, config: tuple[int, int], firstboot: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fleet-flash-") as tmp:
        copy = Path(tmp) / "disk.img"
        run(["cp", "--sparse=always", "--reflink=auto", image, copy])
        yaml_file = Path(tmp) / FILENAME
        yaml_file.write_bytes(firstboot)
        run(
            ["mcopy", "-o", "-i", f"{copy}@@{config[0]}", yaml_file, f"::/{FILENAME}"],
            env={"MTOOLS_SKIP_CHECK": "1"},
        )
        yield copy


def _ranges(size: int, skip: tuple[int, int]) -> list[tuple[int, int]]:
    """Byte ranges to write: all but the empty slot B system partition."""
    start, length = skip
    return [(0, start), (start + length, size - start - length)]


def _write_and_verify(image: Path, device: Path, skip: tuple[int, int]) -> None:
    size = image.stat().st_size
    ranges = _ranges(size, skip)
    total = sum(length for _, length in ranges)
    written = hashlib.sha256()
    try:
        src = os.open(image, os.O_RDONLY)
        dst = os.open(device, os.O_WRONLY | os.O_EXCL)
    except OSError as err:
        raise FlashError(f"cannot open {device} for writing: {err.strerror}") from err
    try:
        bar = Bar(f"writing {device}", total)
        for offset, length in ranges:
            for pos in range(offset, offset + length, BLOCK):
                block = os.pread(src, min(BLOCK, offset + length - pos), pos)
                os.pwrite(dst, block, pos)
                written.update(block)
                bar.advance(len(block))
        os.fsync(dst)
    except OSError as err:
        raise FlashError(f"writing {device} failed: {err.strerror}") from err
    finally:
        os.close(src)
        os.close(dst)
    if _read_back(device, ranges, total) != written.hexdigest():
        raise FlashError(f"read-back of {device} does not match the image: the card may be faulty")


def _read_back(device: Path, ranges: list[tuple[int, int]], total: int) -> str:
    digest = hashlib.sha256()
    fd = os.open(device, os.O_RDONLY)
    try:
        # Drop cached pages so the comparison reads the medium, not what we just wrote.
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        bar = Bar(f"verifying {device}", total)
        for offset, length in ranges:
            for pos in range(offset, offset + length, BLOCK):
                block = os.pread(fd, min(BLOCK, offset + length - pos), pos)
                digest.update(block)
                bar.advance(len(block))
    finally:
        os.close(fd)
    return digest.hexdigest()
