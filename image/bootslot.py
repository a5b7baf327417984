"""A boot partition seen from outside, for ``fleet-image inspect``: its boot mode, its
``boot.sig`` and the files the firmware loads (read with mtools, nothing mounted).

Modes: ``unsigned`` (loose boot files: the development image) and ``secure-boot``
(``boot.img`` + ``boot.sig``, :mod:`image.secureboot`). In secure-boot mode the files the
firmware loads (``cmdline.txt``, the boards' boot files) are read from inside ``boot.img``.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from fleetcore import bootsig
from fleetcore.errors import CommandError
from fleetcore.run import run, run_text
from image import bootfiles, verity
from image.secureboot import BOOT_IMG, BOOT_SIG

_MTOOLS = {"MTOOLS_SKIP_CHECK": "1"}


class Mode(StrEnum):
    UNSIGNED = "unsigned"
    SECURE_BOOT = "secure-boot"


NOTES = {
    Mode.UNSIGNED: "development: anyone with the card can replace the kernel and initramfs",
    Mode.SECURE_BOOT: "a bootloader with SIGNED_BOOT loads boot.img only if boot.sig verifies "
    "against its customer key",
}


@dataclass(frozen=True)
class SlotView:
    mode: Mode
    lines: list[str]
    verified: bool | None
    """Whether boot.sig verifies against the key given (False when there is none to check);
    None without a key."""


def describe(image: Path, offset: int, key: rsa.RSAPublicKey | None) -> SlotView:
    """The mode of the FAT boot partition at ``offset`` and the lines ``inspect`` prints."""
    if not fat_boot_files(image, offset).has(BOOT_IMG):
        lines = [f"mode: {Mode.UNSIGNED} ({NOTES[Mode.UNSIGNED]})", *_files(image, offset)]
        return SlotView(Mode.UNSIGNED, lines, None if key is None else False)
    with tempfile.TemporaryDirectory(prefix="fleet-inspect-") as scratch:
        inner = Path(scratch) / BOOT_IMG
        run(["mcopy", "-n", "-i", f"{image}@@{offset}", f"::/{BOOT_IMG}", inner], env=_MTOOLS)
        lines = [f"mode: {Mode.SECURE_BOOT} ({NOTES[Mode.SECURE_BOOT]})"]
        signature, verified = _signature(inner, fat_file(image, offset, BOOT_SIG), key)
        lines += signature + _files(inner, 0)
    return SlotView(Mode.SECURE_BOOT, lines, verified)


def _signature(
    inner: Path, sig_text: str | None, key: rsa.RSAPublicKey | None
) -> tuple[list[str], bool | None]:
    with inner.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").digest()
    lines = [f"boot.img: {inner.stat().st_size} bytes sha256 {digest.hex()}"]
    failed = None if key is None else False
    if sig_text is None:
        lines.append(f"{BOOT_SIG}: missing (no bootloader in signed-boot mode loads this)")
        return lines, failed
    try:
        sig = bootsig.parse(sig_text.encode())
    except bootsig.BootSigError as err:
        return [*lines, f"{BOOT_SIG}: unreadable: {err}"], failed
    match = "matches boot.img" if sig.sha256 == digest.hex() else "DOES NOT match boot.img"
    lines.append(f"{BOOT_SIG}: sha256 {sig.sha256} ({match}), ts {sig.ts}")
    if key is None:
        return [*lines, "signature: not checked (give --boot-pubkey)"], None
    try:
        bootsig.verify(sig, digest, key)
    except bootsig.BootSigError as err:
        return [*lines, f"signature: FAILS against the given key: {err}"], False
    return [*lines, "signature: verified against the given key"], True


def _files(image: Path, offset: int) -> list[str]:
    lines = []
    cmdline = fat_file(image, offset, "cmdline.txt")
    if cmdline is not None:
        lines.append(f"cmdline.txt:\n      {cmdline.strip()}")
        lines.append(f"root: {verity.describe(cmdline)}")
    lines.append(f"boards: {bootfiles.describe_boards(fat_boot_files(image, offset))}")
    return lines


def fat_boot_files(image: Path, offset: int) -> bootfiles.BootFiles:
    """The files of the FAT filesystem at ``offset`` and its config.txt."""
    try:
        listing = run_text(["mdir", "-/", "-b", "-i", f"{image}@@{offset}", "::/"], env=_MTOOLS)
    except CommandError:
        listing = ""
    names = [
        line[3:] for line in listing.splitlines() if line.startswith("::/") and line[-1] != "/"
    ]
    return bootfiles.BootFiles.of(names, fat_file(image, offset, bootfiles.CONFIG_TXT))


def fat_file(image: Path, offset: int, name: str) -> str | None:
    """A text file of the FAT filesystem at ``offset``; None when it is not there."""
    try:
        proc = run(["mtype", "-i", f"{image}@@{offset}", f"::/{name}"], env=_MTOOLS)
    except CommandError:
        return None
    return proc.stdout.decode(errors="replace")
