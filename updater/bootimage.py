"""Before a trial: a secure-boot slot's ``boot.img`` must match the SHA-256 its ``boot.sig``
names (the digest line the bootloader checks first, :mod:`fleetcore.bootsig`).

The device does not hold the customer public key (it lives in the bootloader EEPROM, its hash in
OTP; docs/boards.md), so the RSA signature itself is left to the bootloader; what the updater can
refuse before a reboot is a boot.img that was written wrong or altered on the card. A slot
without boot.sig (unsigned mode) has nothing to check here.
"""

from __future__ import annotations

import hashlib

from fleetcore.bootsig import BootSigError, check_digest, parse
from fleetcore.layout import Slot
from updater.disk import BootDisk, PartitionIO
from updater.errors import InstallError
from updater.fatroot import NotFat, Reader, read_root_file


class BootImageRefused(InstallError):
    """The new slot's boot.img does not match its boot.sig."""


def check_files(read: Reader, limit: int) -> str | None:
    """The boot.img SHA-256 (hex) when the FAT behind ``read`` holds a boot.sig that matches it,
    None when it holds no boot.sig; :class:`BootSigError` otherwise."""
    raw_sig = read_root_file(read, "boot.sig")
    if raw_sig is None:
        return None
    sig = parse(raw_sig)
    image = read_root_file(read, "boot.img", limit=limit)
    if image is None:
        raise BootSigError("boot.sig is present but boot.img is not")
    digest = hashlib.sha256(image).digest()
    check_digest(sig, digest)
    return digest.hex()


def check_slot(disk: BootDisk, slot: Slot) -> str | None:
    """Raise :class:`BootImageRefused` unless ``slot``'s boot.img matches its boot.sig."""
    boot = disk.slot_partition("boot", slot)
    with PartitionIO(boot, writable=False) as reader:
        try:
            return check_files(reader.read, boot.size)
        except NotFat:
            return None
        except BootSigError as err:
            raise BootImageRefused(f"{boot.label}: {err}") from err


def is_signed(disk: BootDisk, slot: Slot) -> bool:
    """Whether ``slot``'s boot partition holds a boot.sig (a secure-boot slot)."""
    boot = disk.slot_partition("boot", slot)
    with PartitionIO(boot, writable=False) as reader:
        try:
            return read_root_file(reader.read, "boot.sig") is not None
        except NotFat:
            return False
