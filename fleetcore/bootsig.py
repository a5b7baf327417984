"""``boot.sig``: the Raspberry Pi bootloader's signature file for a secure-boot ``boot.img``.

The format ``rpi-eeprom-digest`` writes (raspberrypi/rpi-eeprom, raspberrypi/usbboot), one
item per line::

    <sha256 of boot.img, 64 lowercase hex digits>
    ts: <unix seconds>
    rsa2048: <RSA-2048 PKCS#1 v1.5 signature of SHA-256(boot.img), 512 hex digits>

The bootloader in signed-boot mode loads ``boot.img`` only when the ``rsa2048`` signature
verifies against the customer public key in its EEPROM (whose hash is in OTP); the ``ts`` line
is the update timestamp it reports. Pure: bytes in, a :class:`BootSig` or an error out; the
image is passed as its digest so a caller can hash it in a stream. Shared by the image builder
(writes it), ``fleet-image inspect`` and the QEMU harness's firmware (verify it).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from fleetcore.errors import FormatError

RSA_BITS = 2048
"""The only key size the bootloader checks (rpi-eeprom-digest: "only ... 2048bit RSA")."""
SIGNATURE_BYTES = RSA_BITS // 8
MAX_SIZE = 4096
"""A boot.sig is about 600 bytes; anything much larger is not one."""
TRUST_DIR = "usr/share/metrica-fleet/boot-keys"
"""Where an image lists the boot keys its updater accepts for a new slot, relative to its root:
one PEM public key per file, named ``<fingerprint>.pem`` (:func:`trust_file`)."""
MAX_KEY_FILE = 4096
"""An RSA-2048 public key PEM is 451 bytes; a larger file in the trust list is not one."""

_SPKI = serialization.PublicFormat.SubjectPublicKeyInfo
_DIGEST = re.compile(r"[0-9a-f]{64}")
_TS = re.compile(r"ts: (\d{1,12})")
_RSA = re.compile(rf"rsa2048: ([0-9a-f]{{{2 * SIGNATURE_BYTES}}})")


class BootSigError(FormatError):
    """A boot.sig is malformed, or does not verify."""


@dataclass(frozen=True)
class BootSig:
    sha256: str
    """Hex SHA-256 of boot.img."""
    ts: int
    signature: bytes | None
    """The RSA-2048 signature; None in a digest-only file (what the unsigned mode allows)."""

    def render(self) -> bytes:
        lines = [self.sha256, f"ts: {self.ts}"]
        if self.signature is not None:
            lines.append(f"rsa2048: {self.signature.hex()}")
        return ("\n".join(lines) + "\n").encode()


def parse(data: bytes) -> BootSig:
    """Read a boot.sig; refuse anything but the three lines above (the rsa2048 one optional)."""
    if len(data) > MAX_SIZE:
        raise BootSigError(f"boot.sig is {len(data)} bytes, more than {MAX_SIZE}")
    try:
        lines = data.decode("ascii").splitlines()
    except UnicodeDecodeError as err:
        raise BootSigError("boot.sig is not ASCII text") from err
    if len(lines) not in (2, 3) or not _DIGEST.fullmatch(lines[0]):
        raise BootSigError("boot.sig does not start with a SHA-256 hex digest and a ts: line")
    ts = _TS.fullmatch(lines[1])
    if ts is None:
        raise BootSigError(f"boot.sig line 2 is not 'ts: <seconds>': {lines[1][:40]!r}")
    signature = None
    if len(lines) == 3:
        rsa_line = _RSA.fullmatch(lines[2])
        if rsa_line is None:
            raise BootSigError("boot.sig line 3 is not 'rsa2048: <512 hex digits>'")
        signature = bytes.fromhex(rsa_line.group(1))
    return BootSig(sha256=lines[0], ts=int(ts.group(1)), signature=signature)


def load_public_key(pem: bytes) -> rsa.RSAPublicKey:
    """The customer public key (PEM, SubjectPublicKeyInfo or PKCS#1); RSA-2048 only."""
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as err:
        raise BootSigError("not a PEM public key") from err
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size != RSA_BITS:
        kind = f"RSA-{key.key_size}" if isinstance(key, rsa.RSAPublicKey) else type(key).__name__
        raise BootSigError(f"the bootloader checks RSA-{RSA_BITS} keys only, not {kind}")
    return key


def check_digest(sig: BootSig, image_sha256: bytes) -> None:
    """Raise :class:`BootSigError` unless ``sig`` names this image SHA-256 (raw 32 bytes): the
    check that needs no key, so a device without the customer key can still make it."""
    if sig.sha256 != image_sha256.hex():
        raise BootSigError(
            f"boot.sig names sha256 {sig.sha256[:16]}..., boot.img is {image_sha256.hex()[:16]}..."
        )


def verify(sig: BootSig, image_sha256: bytes, key: rsa.RSAPublicKey) -> None:
    """Check ``sig`` against the image's SHA-256 (raw 32 bytes) and the customer key, as the
    bootloader does in signed-boot mode; raise :class:`BootSigError` saying what failed."""
    check_digest(sig, image_sha256)
    if sig.signature is None:
        raise BootSigError("boot.sig carries no rsa2048 signature")
    try:
        key.verify(sig.signature, image_sha256, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    except InvalidSignature as err:
        raise BootSigError("boot.sig's rsa2048 signature does not verify against the key") from err


def sign(image_sha256: bytes, key: rsa.RSAPrivateKey, ts: int) -> BootSig:
    """A boot.sig for an image of this SHA-256. PKCS#1 v1.5 is deterministic, so equal
    inputs give equal bytes."""
    signature = key.sign(image_sha256, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    return BootSig(sha256=image_sha256.hex(), ts=ts, signature=signature)


def fingerprint(key: rsa.RSAPublicKey) -> str:
    """The key's SHA-256 fingerprint: hex digest of its DER SubjectPublicKeyInfo (what
    ``openssl pkey -pubin -outform DER | sha256sum`` prints)."""
    der = key.public_bytes(serialization.Encoding.DER, _SPKI)
    return hashlib.sha256(der).hexdigest()


def trust_file(key: rsa.RSAPublicKey) -> tuple[str, bytes]:
    """The file that lists ``key`` in an image's :data:`TRUST_DIR`: its name and PEM bytes."""
    pem = key.public_bytes(serialization.Encoding.PEM, _SPKI)
    return f"{fingerprint(key)}.pem", pem
