"""The close step of a boot-key rollover may not arrive out of order (ADR 0084).

A bootloader release whose image turns signed boot on under key K (``SIGNED_BOOT=1`` and
K's ``pubkey.bin``, :mod:`fleetcore.eepromkey`) is flashed only when the COMMITTED slot's
boot partition holds a ``boot.sig`` whose RSA signature verifies under K: otherwise the
board would reboot into a bootloader that refuses the slot it falls back to. The signature
is checked over the digest ``boot.sig`` names (the slot's boot.img was checked against it when
it was installed); a release with signed boot off passes.
"""

from __future__ import annotations

from collections.abc import Callable

from fleetcore import bootsig, eepromkey
from fleetcore.errors import FleetError, FormatError
from updater.errors import BootloaderError


def check_close_step(image: bytes, committed_boot_sig: Callable[[], bytes | None]) -> None:
    """Raise :class:`BootloaderError` (one line naming the key's fingerprint) unless the
    committed slot's boot.sig (``committed_boot_sig()``, read only for a signed-boot image) is
    signed by the key ``image`` turns signed boot on under; nothing when it has signed boot off."""
    try:
        state = eepromkey.read(image)
    except FormatError as err:
        raise BootloaderError(str(err)) from err
    if not state.signed_boot or state.key is None:
        return
    refusal = (
        f"the bootloader release turns signed boot on under key {bootsig.fingerprint(state.key)}"
    )
    try:
        committed_sig = committed_boot_sig()
    except FleetError as err:  # the card's bytes: a damaged FAT, an unreadable partition
        raise BootloaderError(
            f"{refusal}; cannot read the committed slot's boot.sig: {err}"
        ) from err
    if committed_sig is None:
        raise BootloaderError(f"{refusal}; the committed slot has no boot.sig")
    try:
        sig = bootsig.parse(committed_sig)
        bootsig.verify(sig, bytes.fromhex(sig.sha256), state.key)
    except bootsig.BootSigError as err:
        raise BootloaderError(f"{refusal}; the committed slot's boot.sig: {err}") from err
