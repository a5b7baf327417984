"""Before a trial: the written system slot must verify against the root hash its boot files
pin (``fleet.verity=`` in the new boot partition's cmdline.txt, ADR 0071).

``veritysetup verify`` reads the slot when it has a device node of its own and the tool is
installed (the image ships cryptsetup-bin); otherwise (a slot that is a byte range of a disk
image, or no veritysetup) the same tree is recomputed in Python (``fleetcore.verity``).
A release without verity has nothing to check here.
"""

from __future__ import annotations

import logging
import shutil

from fleetcore.errors import CommandError, FormatError
from fleetcore.layout import Slot
from fleetcore.run import run
from fleetcore.verity import HASH, VerityMismatch, VerityParams, check_tree, from_cmdline
from updater.disk import BootDisk, Partition, PartitionIO
from updater.errors import InstallError
from updater.fatroot import NotFat, Reader, read_root_file

log = logging.getLogger(__name__)

TOOL = "veritysetup"


class VerityRefused(InstallError):
    """The new system slot does not verify against the root hash of its boot files."""


def slot_params(disk: BootDisk, slot: Slot) -> VerityParams | None:
    """The verity parameters in ``slot``'s boot partition (in its cmdline.txt, or in the one
    inside its signed boot.img), None when it names no verity root.

    A boot image that holds no FAT filesystem has no cmdline.txt, so it names no root either
    (the updater's tests install such synthetic images); the firmware could not boot it, and
    its bytes were already checked against the signed hash."""
    boot = disk.slot_partition("boot", slot)
    with PartitionIO(boot, writable=False) as reader:
        try:
            text = read_root_file(reader.read, "cmdline.txt")
            if text is None:
                text = _signed_cmdline(reader.read, boot.size)
            return from_cmdline((text or b"").decode("utf-8", "replace"))
        except NotFat:
            return None
        except FormatError as err:
            raise VerityRefused(f"{boot.label}: {err}") from err


def _signed_cmdline(read: Reader, limit: int) -> bytes | None:
    """cmdline.txt inside ``boot.img`` (secure boot, ADR 0070: the partition holds only the
    signed ramdisk, so the root hash is pinned there), None without a boot.img."""
    image = read_root_file(read, "boot.img", limit=limit)
    if image is None:
        return None
    try:
        return read_root_file(lambda offset, length: image[offset : offset + length], "cmdline.txt")
    except NotFat as err:
        raise FormatError(f"boot.img holds no FAT filesystem: {err}") from err


def check_slot(disk: BootDisk, slot: Slot, *, tool: str | None = None) -> VerityParams | None:
    """Raise :class:`VerityRefused` unless ``slot``'s system partition verifies against the
    root hash in its boot files. ``tool``: the veritysetup to use (default: from PATH)."""
    params = slot_params(disk, slot)
    if params is None:
        return None
    system = disk.slot_partition("system", slot)
    if params.image_size > system.size:
        raise VerityRefused(
            f"{system.label} is {system.size} bytes; its verity tree ends at {params.image_size}"
        )
    tool = tool or shutil.which(TOOL)
    if tool is not None and system.offset == 0:
        _veritysetup(tool, system, params)
    else:
        with PartitionIO(system, writable=False) as reader:
            reader.drop_cache(0, params.image_size)
            try:
                check_tree(reader.read, params)
            except VerityMismatch as err:
                raise VerityRefused(f"{system.label}: {err}") from err
    log.info("%s verifies against root hash %s", system.label, params.root_hash)
    return params


def _veritysetup(tool: str, system: Partition, params: VerityParams) -> None:
    try:
        run(
            [
                tool, "verify", "--no-superblock", f"--hash={HASH}",
                f"--data-blocks={params.data_blocks}", f"--hash-offset={params.hash_offset}",
                f"--salt={params.salt}", system.path, system.path, params.root_hash,
            ]
        )  # fmt: skip
    except CommandError as err:
        raise VerityRefused(
            f"{system.label} does not verify against root hash {params.root_hash[:16]}...: "
            f"{err.stderr.strip().splitlines()[0] if err.stderr.strip() else err}"
        ) from err
