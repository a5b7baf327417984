"""The raw disk image: a sparse file with a GPT and partition images copied in place."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fleetcore.run import run, run_text
from image.errors import InputError
from image.layout import Layout, Partition, sfdisk_script

_COPY_BLOCK = 4 * 2**20


def create(path: Path, layout: Layout) -> None:
    """A sparse file of the layout's size carrying its partition table."""
    path.unlink(missing_ok=True)
    with path.open("wb") as handle:
        handle.truncate(layout.disk_size)
    run(
        ["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", path],
        input=sfdisk_script(layout).encode(),
    )


def write_partition(disk: Path, part: Partition, image: Path) -> None:
    """Copy ``image`` to the start of ``part``, leaving zero blocks as holes."""
    size = image.stat().st_size
    if size > part.size:
        raise InputError(f"{image.name} is {size} bytes, larger than partition {part.label}")
    with image.open("rb") as src, disk.open("r+b") as dst:
        copy_sparse(src.fileno(), dst.fileno(), part.start, size)


def copy_sparse(src_fd: int, dst_fd: int, dst_offset: int, size: int) -> None:
    """Copy ``size`` bytes from the start of ``src_fd`` to ``dst_offset`` in ``dst_fd``."""
    zero = bytes(_COPY_BLOCK)
    pos = 0
    while pos < size:
        block = os.pread(src_fd, min(_COPY_BLOCK, size - pos), pos)
        if not block:
            raise InputError("partition image shrank while it was copied")
        if block != zero[: len(block)]:
            os.pwrite(dst_fd, block, dst_offset + pos)
        pos += len(block)


def read_table(path: Path) -> dict[str, Any]:
    """The partition table as ``sfdisk -J`` reports it."""
    table: dict[str, Any] = json.loads(run_text(["sfdisk", "-J", path]))["partitiontable"]
    return table
