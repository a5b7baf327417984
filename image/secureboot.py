"""Secure-boot boot partitions: a slot's boot files packed into a signed ``boot.img``.

With ``fleet-image assemble --boot-key KEY.pem`` each boot partition (boot_a, boot_b) holds
three files instead of the loose boot files (ADR 0070):

- ``boot.img``: a FAT image (FAT12/16/32 by size, as mkfs.vfat picks) holding the slot's whole
  boot folder: firmware (``start4.elf``/``fixup4.dat``), kernel, initramfs, device trees,
  overlays, ``config.txt`` and the slot's ``cmdline.txt``. In signed-boot mode the bootloader
  loads every one of those from this ramdisk, never from the partition.
- ``boot.sig``: its SHA-256, ``ts:`` (SOURCE_DATE_EPOCH) and ``rsa2048:`` signature
  (:mod:`fleetcore.bootsig`, the ``rpi-eeprom-digest`` format).
- ``config.txt`` with ``boot_ramdisk=1``: makes a board without ``SIGNED_BOOT`` load the same
  ``boot.img`` (unchecked), so one card boots on development boards and on locked ones. With
  ``SIGNED_BOOT=1`` the bootloader loads ``boot.img`` whatever this file says.

The system image lists the public keys its updater accepts on a new slot's boot.sig
(:func:`write_trust`, :data:`fleetcore.bootsig.TRUST_DIR`): the signing key's own, and any named
with ``--boot-trust`` for a key rollover (docs/security.md); an unsigned image lists none.

``boot.img`` is reproducible: fixed volume id and label (the same for both slots, so slot B's
image differs from slot A's only in ``cmdline.txt`` and the signature), sorted files, every
timestamp the build epoch; RSA PKCS#1 v1.5 signatures are deterministic.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from fleetcore import bootsig
from image import bootfiles, filesystems
from image.errors import InputError, LayoutError
from image.layout import MIB

BOOT_IMG = "boot.img"
BOOT_SIG = "boot.sig"
MAX_BOOT_IMG = 128 * MIB
"""The bootloader's largest ramdisk (rpi-eeprom release notes: 96 MB from 2021-10, 128 MB since
2022-03; tryboot under secure boot needs 2024-04-15 or later anyway)."""
BOOT_IMG_LABEL = "FLEETBOOT"
OUTER_CONFIG_TXT = """\
# Metrica Fleet secure-boot slot: firmware, kernel, initramfs, device trees, config.txt and
# cmdline.txt are inside boot.img, signed in boot.sig (ADR 0070). A bootloader with
# SIGNED_BOOT=1 loads boot.img only if boot.sig verifies against its customer key; without it,
# this line makes it load the same boot.img unchecked.
[all]
boot_ramdisk=1
"""


@dataclass(frozen=True)
class BootSigner:
    """The customer's RSA-2048 private key and the timestamp every boot.sig of a build carries."""

    key: rsa.RSAPrivateKey
    ts: int
    also_trusted: tuple[rsa.RSAPublicKey, ...] = ()
    """Public keys the image's updater accepts besides the signing key's (a key rollover)."""

    @classmethod
    def load(cls, path: Path, *, ts: int, trust: tuple[Path, ...] = ()) -> BootSigner:
        return cls(load_key(path), ts, tuple(load_trusted(each) for each in trust))

    def trusted(self) -> list[rsa.RSAPublicKey]:
        """The keys the image lists: the signing key's first, then the others by fingerprint,
        each once."""
        own = self.key.public_key()
        others = {bootsig.fingerprint(key): key for key in self.also_trusted}
        others.pop(bootsig.fingerprint(own), None)
        return [own, *(others[name] for name in sorted(others))]

    def seal(self, tree: Path, work: Path, *, label: str, volume_id: str, epoch: int) -> Path:
        """The outer folder of boot partition ``label`` whose boot files are ``tree``:
        ``boot.img`` of ``tree``, its ``boot.sig``, and the outer ``config.txt``."""
        outer = work / f"{label}-sealed"
        outer.mkdir()
        image = outer / BOOT_IMG
        size = filesystems.vfat_size_for(tree)
        if size > MAX_BOOT_IMG:
            raise LayoutError(
                f"boot.img of {label} would be {size // MIB} MiB; the bootloader loads at "
                f"most {MAX_BOOT_IMG // MIB} MiB",
                hint="leave unused firmware, device trees and overlays out of boot/firmware",
            )
        filesystems.make_vfat(
            image, size=size, label=BOOT_IMG_LABEL, volume_id=volume_id, content=tree, epoch=epoch
        )
        with image.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").digest()
        (outer / BOOT_SIG).write_bytes(bootsig.sign(digest, self.key, self.ts).render())
        (outer / bootfiles.CONFIG_TXT).write_text(OUTER_CONFIG_TXT)
        return outer


def load_key(path: Path) -> rsa.RSAPrivateKey:
    """The boot signing key: an unencrypted PEM RSA-2048 private key, or one clear error."""
    if not path.exists():
        raise InputError(f"boot key {path} does not exist")
    try:
        pem = path.read_bytes()
    except OSError as err:
        raise InputError(f"cannot read boot key {path}: {err.strerror}") from err
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError as err:
        raise InputError(
            f"boot key {path} is encrypted", hint="give the unencrypted PEM private key"
        ) from err
    except ValueError as err:
        if b"PUBLIC KEY-----" in pem:
            raise InputError(
                f"boot key {path} is a public key",
                hint="--boot-key takes the RSA-2048 private key; the public key goes in the "
                "EEPROM (docs/security.md)",
            ) from err
        raise InputError(f"boot key {path} is not a PEM private key") from err
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InputError(
            f"boot key {path} is {_kind(key)}; the Raspberry Pi bootloader checks RSA-2048 only"
        )
    if key.key_size != bootsig.RSA_BITS:
        raise InputError(
            f"boot key {path} is RSA-{key.key_size}; the Raspberry Pi bootloader checks "
            f"RSA-{bootsig.RSA_BITS} only"
        )
    return key


def load_trusted(path: Path) -> rsa.RSAPublicKey:
    """A ``--boot-trust`` key: a PEM RSA-2048 public key, or one clear error."""
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"trusted boot key {path} does not exist") from None
    except OSError as err:
        raise InputError(f"cannot read trusted boot key {path}: {err.strerror}") from err
    if b"PRIVATE KEY" in pem:
        raise InputError(
            f"trusted boot key {path} is a private key",
            hint="--boot-trust takes the public key (openssl rsa -in KEY.pem -pubout)",
        )
    try:
        return bootsig.load_public_key(pem)
    except bootsig.BootSigError as err:
        raise InputError(f"trusted boot key {path}: {err}") from err


def write_trust(rootfs: Path, signer: BootSigner | None) -> None:
    """List the keys ``signer``'s image trusts in ``rootfs``'s :data:`~fleetcore.bootsig.TRUST_DIR`
    (replacing any list a previous build left there); remove the list for an unsigned image."""
    folder = rootfs / bootsig.TRUST_DIR
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
    shutil.rmtree(folder, ignore_errors=True)
    if signer is None:
        return
    folder.mkdir(parents=True)
    for key in signer.trusted():
        name, pem = bootsig.trust_file(key)
        (folder / name).write_bytes(pem)
        (folder / name).chmod(0o644)


def _kind(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"an EC key ({key.curve.name})"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "an Ed25519 key"
    return f"a {type(key).__name__}"


def check_boot_files(files: bootfiles.BootFiles, folder: Path) -> None:
    """What a secure image needs beyond the boards' own checks: an initramfs (the root is
    opened from it), named by config.txt's ``initramfs`` line or, with ``auto_initramfs=1``
    (Raspberry Pi OS), the firmware's ``initramfs<suffix>`` beside each ``kernel<suffix>.img``.
    The kernel and device trees are checked per family by :mod:`image.bootfiles`."""
    settings = files.settings(None)
    names = [n for n in settings.get("initramfs", "").split(",") if n]
    if not names and settings.get("auto_initramfs") == "1":
        kernels = [settings["kernel"]] if "kernel" in settings else list(_AUTO_KERNELS)
        names = [_auto_initramfs(k) for k in kernels if files.has(k)]
    if not names:
        raise InputError(
            f"{folder}/config.txt names no initramfs; a secure-boot image needs one",
            hint="add 'initramfs initrd.img followkernel' (or auto_initramfs=1 with "
            "kernel8.img and initramfs8) to config.txt",
        )
    missing = [name for name in names if not files.has(name)]
    if missing:
        raise InputError(f"{folder} lacks the initramfs {', '.join(missing)} config.txt names")


# The kernels the firmware loads without a kernel= line (64-bit Pi 4 and Pi 5 families).
_AUTO_KERNELS = ("kernel8.img", "kernel_2712.img")


def _auto_initramfs(kernel: str) -> str:
    """The initramfs ``auto_initramfs=1`` loads with ``kernel``: kernel8.img -> initramfs8."""
    stem = kernel.rsplit("/", 1)[-1].removesuffix(".img")
    if not stem.startswith("kernel"):
        raise InputError(
            f"auto_initramfs=1 pairs kernel*.img with initramfs*, not {kernel}",
            hint="name the initramfs with an 'initramfs FILE followkernel' line",
        )
    return stem.replace("kernel", "initramfs", 1)
