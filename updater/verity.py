"""Before a trial: the written system slot must verify against the root hash its boot files
pin (``fleet.verity=`` in the new boot partition's cmdline.txt, ADR 0071).

The tree is recomputed in Python (``fleetcore.verity.TreeCheck``) from the same read that
compares the slot with its signed hash, so the check costs hashing, not a second read of
the card. A release without verity has nothing to check here.
"""

from __future__ import annotations

import logging

from fleetcore.errors import FormatError
from fleetcore.layout import Slot
from fleetcore.verity import TreeCheck, VerityMismatch, VerityParams, from_cmdline
from updater.disk import BootDisk, PartitionIO
from updater.errors import InstallError
from updater.fatextents import locate
from updater.fatroot import NotFat, Reader, read_root_file

log = logging.getLogger(__name__)


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
    signed ramdisk, so the root hash is pinned there), None without a boot.img. Read through
    boot.img's extents: its boot sector, FAT, root folder and cmdline.txt, not the whole image."""
    image = locate(read, "boot.img", limit=limit)
    if image is None:
        return None
    try:
        return read_root_file(image.reader(read), "cmdline.txt")
    except NotFat as err:
        raise FormatError(f"boot.img holds no FAT filesystem: {err}") from err


class SlotTree:
    """A system slot's verity tree, checked while the slot is read back against its signed
    hash (``install.verify_slot``): one read of the slot proves both (ADR 0071)."""

    def __init__(self, label: str, params: VerityParams) -> None:
        self.label = label
        self.params = params
        self._check = TreeCheck(params)

    def update(self, _pos: int, data: bytes) -> None:
        """The read-back's next piece (its offset is not needed: the slot is read in order)."""
        self._check.update(data)

    def finish(self) -> None:
        """Raise :class:`VerityRefused` unless what was read verifies against the root."""
        try:
            self._check.finish()
        except VerityMismatch as err:
            raise VerityRefused(f"{self.label}: {err}") from err
        log.info("%s verifies against root hash %s", self.label, self.params.root_hash)


def slot_tree(disk: BootDisk, slot: Slot, *, signed_size: int) -> SlotTree | None:
    """The check of ``slot``'s system partition against the root hash in its boot files (read
    them after the boot image read back as signed), None when they pin no root. The tree must
    lie inside the ``signed_size`` bytes of the signed system image, which the read-back
    covers; a tree past them would be bytes nobody signed."""
    params = slot_params(disk, slot)
    if params is None:
        return None
    label = disk.slot_partition("system", slot).label
    if params.image_size > signed_size:
        raise VerityRefused(
            f"{label}: its verity tree ends at {params.image_size}, past the "
            f"{signed_size} bytes of the signed system image"
        )
    return SlotTree(label, params)
