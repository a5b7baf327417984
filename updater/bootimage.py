"""Before a trial: a secure-boot slot's ``boot.img`` must match the SHA-256 its ``boot.sig``
names (the digest line the bootloader checks first, :mod:`fleetcore.bootsig`) and, when the
running image lists the boot keys it trusts (:mod:`updater.bootkeys`), boot.sig's RSA signature
must verify against one of them: the check the board's bootloader makes with the customer key
in its EEPROM, made before the reboot, so a slot the bootloader would refuse is never tried.
Without such a list (an unsigned development image) the signature is left to the bootloader,
and a slot without boot.sig has nothing to check; with one, a slot without a signed boot image
is refused.

The check rides on the read-back of the boot partition (``install.verify_slot``, ADR 0070):
boot.img's clusters are located first (directory entry and chain, small reads), and its bytes
are hashed as the partition streams past. When its clusters are not in ascending order on the
card, the stream cannot pass them in file order, so boot.img is read again on its own after
the stream: correctness never depends on the layout, only the cost does.
"""

from __future__ import annotations

import hashlib
import logging

from fleetcore.bootsig import BootSig, BootSigError, check_digest, parse
from fleetcore.layout import Slot
from updater.bootkeys import BootTrust
from updater.disk import BootDisk, PartitionIO
from updater.errors import InstallError
from updater.fatextents import FileExtents, locate
from updater.fatroot import FatError, NotFat, Reader, read_root_file

log = logging.getLogger(__name__)
_PIECE = 1 << 20


class BootImageRefused(InstallError):
    """The new slot's boot.img does not match its boot.sig."""


class BootImageCheck:
    """boot.img's digest against boot.sig's, from the read-back of its partition: feed every
    piece the read-back reads (:meth:`update`, in partition order), then :meth:`finish`."""

    def __init__(
        self,
        label: str,
        sig: BootSig,
        image: FileExtents,
        read: Reader,
        *,
        fused: bool,
        trust: BootTrust | None = None,
    ) -> None:
        self.label, self.sig, self.image, self.read = label, sig, image, read
        self.trust = trust
        self.signed_by: str | None = None
        """After :meth:`finish`: the fingerprint of the trusted key that signed boot.sig (None
        without a trust list)."""
        self.fused = fused
        """True when the digest is taken from the read-back's own bytes; False when boot.img's
        clusters are out of order and :meth:`finish` reads it again."""
        self._digest = hashlib.sha256()
        self._next = 0  # the first extent not yet hashed to its end
        self._hashed = 0

    def update(self, pos: int, data: bytes) -> None:
        """Hash the part of boot.img inside ``data``, the partition's bytes from ``pos``."""
        if not self.fused:
            return
        view, extents = memoryview(data), self.image.extents
        while self._next < len(extents) and extents[self._next].start < pos + len(data):
            extent = extents[self._next]
            start, end = max(extent.start, pos), min(extent.end, pos + len(data))
            self._digest.update(view[start - pos : end - pos])
            self._hashed += end - start
            if extent.end > pos + len(data):
                return
            self._next += 1

    def finish(self) -> str:
        """boot.img's SHA-256 (hex); :class:`BootImageRefused` unless boot.sig names it,
        :class:`~updater.bootkeys.UntrustedBootImage` unless a trusted key signed it."""
        if not self.fused:
            self._hash_separately()
        assert self._hashed == self.image.size, "the read-back skipped bytes of boot.img"
        digest = self._digest.digest()
        try:
            check_digest(self.sig, digest)
        except BootSigError as err:
            raise BootImageRefused(f"{self.label}: {err}") from err
        if self.trust is None:
            log.info(
                "%s: no trusted boot keys in this image; boot.sig's signature is left to "
                "the bootloader",
                self.label,
            )
        else:
            self.signed_by = self.trust.check(self.label, self.sig, digest)
        return digest.hex()

    def _hash_separately(self) -> None:
        read = self.image.reader(self.read)
        try:
            for pos in range(0, self.image.size, _PIECE):
                piece = read(pos, min(_PIECE, self.image.size - pos))
                self._digest.update(piece)
                self._hashed += len(piece)
        except FatError as err:
            raise BootImageRefused(f"{self.label}: {err}") from err


def read_back_check(
    read: Reader, label: str, *, signed_size: int, trust: BootTrust | None = None
) -> BootImageCheck | None:
    """The boot.img check for the read-back of boot partition ``label`` (the FAT behind
    ``read``, of which the first ``signed_size`` bytes are read back), None when the partition
    holds no boot.sig (an unsigned slot) or no FAT at all and the running image trusts no boot
    keys; :class:`BootImageRefused` for a boot.sig without boot.img, a damaged chain, a
    boot.img past the signed bytes, or no signed boot image where ``trust`` requires one."""
    unsigned = BootImageRefused(
        f"{label} holds no signed boot image (boot.img and boot.sig); this device boots only "
        "boot images signed by a key it trusts"
    )
    try:
        raw_sig = read_root_file(read, "boot.sig")
        if raw_sig is None:
            if trust is not None:
                raise unsigned
            return None
        sig = parse(raw_sig)
        image = locate(read, "boot.img", limit=signed_size)
        if image is None:
            raise BootSigError("boot.sig is present but boot.img is not")
    except NotFat:
        if trust is not None:
            raise unsigned from None
        return None
    except (BootSigError, FatError) as err:
        raise BootImageRefused(f"{label}: {err}") from err
    if image.end > signed_size:
        raise BootImageRefused(
            f"{label}: boot.img ends at byte {image.end}, past the {signed_size} bytes of the "
            "signed boot image"
        )
    if not image.ascending:
        log.info("%s: boot.img's clusters are out of order; reading it again to hash it", label)
    return BootImageCheck(label, sig, image, read, fused=image.ascending, trust=trust)


def boot_sig(disk: BootDisk, slot: Slot) -> bytes | None:
    """``slot``'s boot.sig, or None when its boot partition has none (or is not FAT)."""
    boot = disk.slot_partition("boot", slot)
    with PartitionIO(boot, writable=False) as reader:
        try:
            return read_root_file(reader.read, "boot.sig")
        except NotFat:
            return None


def is_signed(disk: BootDisk, slot: Slot) -> bool:
    """Whether ``slot``'s boot partition holds a boot.sig (a secure-boot slot)."""
    return boot_sig(disk, slot) is not None
