"""The simulated bootloader's secure-boot and ramdisk modes: ``boot.img`` + ``boot.sig``.

- Signed boot: the board holds a customer public key (``SimulatedPi(customer_key=...)``,
  standing in for the key in the EEPROM whose hash is in OTP). It then boots nothing but
  ``boot.img`` from the chosen boot partition, and only when ``boot.sig`` verifies against
  that key (:mod:`fleetcore.bootsig`: the digest line matches ``boot.img`` and the
  ``rsa2048`` signature verifies). A partition without them, or whose signature fails, does
  not boot: the boot ends ``UNBOOTABLE``, so a tryboot flag is lost and the committed slot
  boots next, as the real bootloader resets after a failed secure boot.
- Ramdisk without signed boot: a partition whose ``config.txt`` has ``boot_ramdisk=1`` boots
  from its ``boot.img`` unchecked (what an unlocked board does with a secure image).

Either way the kernel, initramfs and ``cmdline.txt`` come from inside ``boot.img`` (a FAT
image read with mtools like any partition), by the same rules as a plain boot partition.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from fleetcore import bootsig
from harness.disk import FatVolume, Partition

BOOT_IMG = "boot.img"
BOOT_SIG = "boot.sig"
CONFIG_TXT = "config.txt"
RAMDISK_LINE = "boot_ramdisk=1"


def wants_ramdisk(volume: FatVolume) -> bool:
    """Whether the partition's ``config.txt`` asks for ``boot.img`` (``boot_ramdisk=1`` on a
    line of its own; sections are not evaluated)."""
    config = volume.read(CONFIG_TXT)
    if config is None:
        return False
    lines = config.decode(errors="replace").splitlines()
    return any(line.strip() == RAMDISK_LINE for line in lines)


def open_ramdisk(volume: FatVolume, dest: Path, key: rsa.RSAPublicKey | None) -> FatVolume | str:
    """Copy ``boot.img`` out of the partition, check it against ``key`` when one is held, and
    return it as a FAT volume; or why the bootloader refuses the partition."""
    where = f"partition {volume.part.number}"
    if BOOT_IMG not in volume.list():
        return f"{where}: no {BOOT_IMG}" + (" (signed boot loads nothing else)" if key else "")
    dest.mkdir(parents=True, exist_ok=True)
    image = dest / BOOT_IMG
    volume.copy_out(BOOT_IMG, image)
    if key is not None:
        refused = _check(volume, image, key)
        if refused is not None:
            return f"{where}: secure boot refused {BOOT_IMG}: {refused}"
    part = Partition(
        number=volume.part.number,
        label=f"{volume.part.label}/{BOOT_IMG}",
        start=0,
        size=image.stat().st_size,
    )
    return FatVolume(image, part)


def _check(volume: FatVolume, image: Path, key: rsa.RSAPublicKey) -> str | None:
    sig_bytes = volume.read(BOOT_SIG)
    if sig_bytes is None:
        return f"no {BOOT_SIG}"
    with image.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").digest()
    try:
        bootsig.verify(bootsig.parse(sig_bytes), digest, key)
    except bootsig.BootSigError as err:
        return str(err)
    return None
