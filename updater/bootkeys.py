"""The boot keys the running image trusts: what the updater checks a new slot's boot.sig with.

A secure image lists, in its read-only system partition under :data:`fleetcore.bootsig.TRUST_DIR`,
the RSA-2048 public keys whose signatures on a new slot's ``boot.img`` it accepts: the key the
image itself was signed with, and any key named with ``fleet-image assemble --boot-trust``
for a key rollover (docs/security.md). Before a trial the updater verifies the new slot's
``boot.sig`` against that list (:meth:`BootTrust.check`), so a release signed with a key the
board's bootloader would refuse is never tried. An unsigned (development) image has no list:
the signature is then the bootloader's alone.

The list is part of the running, verified root, but it is still read as hostile input: one
regular file per key, at most :data:`~fleetcore.bootsig.MAX_KEY_FILE` bytes, named by the
fingerprint of the RSA-2048 public key it holds; anything else refuses every install with one
line, because a list the updater cannot read means it cannot tell which slots would boot.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from fleetcore import bootsig
from fleetcore.bootsig import BootSig, BootSigError
from updater.errors import InstallError

_NAME = re.compile(r"[0-9a-f]{64}\.pem")


class BootKeysError(InstallError):
    """The running image's list of trusted boot keys cannot be read."""


class UntrustedBootImage(InstallError):
    """A new slot's boot.sig is not signed by a key the running image trusts."""


@dataclass(frozen=True)
class BootTrust:
    """The boot keys the running image accepts, by fingerprint."""

    keys: dict[str, rsa.RSAPublicKey]

    def check(self, label: str, sig: BootSig, image_sha256: bytes) -> str:
        """The fingerprint of the trusted key that signed ``sig`` over this boot.img digest (raw
        32 bytes); :class:`UntrustedBootImage` when none did, or ``sig`` names another image."""
        try:
            bootsig.check_digest(sig, image_sha256)
        except BootSigError as err:
            raise UntrustedBootImage(f"{label}: {err}") from err
        if sig.signature is None:
            raise UntrustedBootImage(
                f"{label}: boot.sig carries no rsa2048 signature; this device boots only boot "
                "images signed by a key it trusts"
            )
        for name, key in sorted(self.keys.items()):
            try:
                bootsig.verify(sig, image_sha256, key)
            except BootSigError:
                continue
            return name
        trusted = ", ".join(f"{name[:16]}..." for name in sorted(self.keys))
        raise UntrustedBootImage(
            f"{label}: boot.sig is not signed by a key this device trusts (trusted: {trusted})"
        )


def load(folder: Path) -> BootTrust | None:
    """The trust list in ``folder``; None when the image has none (an unsigned image)."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno in (errno.ENOTDIR, errno.ELOOP):
            raise BootKeysError(f"{folder} is not a folder of boot keys") from err
        raise BootKeysError(f"cannot read {folder}: {err.strerror}") from err
    try:
        names = sorted(os.listdir(dir_fd))  # noqa: PTH208 (listed through the fd)
        keys = {name.removesuffix(".pem"): _read_key(folder, dir_fd, name) for name in names}
    finally:
        os.close(dir_fd)
    if not keys:
        raise BootKeysError(f"{folder} lists no boot keys")
    return BootTrust(keys)


def _read_key(folder: Path, dir_fd: int, name: str) -> rsa.RSAPublicKey:
    where = folder / name
    if not _NAME.fullmatch(name):
        raise BootKeysError(f"{where}: a boot key's file is named <sha256 fingerprint>.pem")
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise BootKeysError(f"{where} is a symlink, not a boot key") from err
        raise BootKeysError(f"cannot read {where}: {err.strerror}") from err
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BootKeysError(f"{where} is not a regular file")
        pem = os.read(fd, bootsig.MAX_KEY_FILE + 1)
    except OSError as err:
        raise BootKeysError(f"cannot read {where}: {err.strerror}") from err
    finally:
        os.close(fd)
    if len(pem) > bootsig.MAX_KEY_FILE:
        raise BootKeysError(f"{where} is larger than {bootsig.MAX_KEY_FILE} bytes")
    if b"PRIVATE KEY" in pem:
        raise BootKeysError(f"{where} holds a private key; the image must list public keys only")
    try:
        key = bootsig.load_public_key(pem)
    except BootSigError as err:
        raise BootKeysError(f"{where}: {err}") from err
    actual = bootsig.fingerprint(key)
    if f"{actual}.pem" != name:
        raise BootKeysError(f"{where} holds the key {actual[:16]}..., not the one its name says")
    return key
