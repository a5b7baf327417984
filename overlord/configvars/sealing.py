"""Secret configuration values at rest: AES-256-GCM under ``OVERLORD_CONFIG_KEY`` (ADR 0068).

A sealed value is ``v1.<key id>.<base64url(nonce | ciphertext | tag)>``. The additional
authenticated data binds it to its row (scope, target and key), so a value copied into another
row, or another key's place, fails authentication instead of being sent to the wrong devices.
The key id (eight hex digits of a hash of the key) names the key a value was sealed under, so
a wrong key is a clear error rather than a failed tag.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from overlord.errors import OverlordError

FORMAT = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
_KEY_FORMAT = (
    f"OVERLORD_CONFIG_KEY must be {KEY_BYTES} bytes in base64; make one with `overlord config-key`"
)


class SecretUnreadable(OverlordError):
    """A sealed value that this Overlord's key cannot open."""


def new_key() -> str:
    """A fresh key, as ``OVERLORD_CONFIG_KEY`` takes it (base64url of 32 random bytes)."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode()


def decode_key(text: str) -> bytes:
    """The 32 key bytes of ``text`` (base64url or base64, padding optional)."""
    cleaned = text.strip()
    try:
        key = base64.urlsafe_b64decode(
            cleaned.replace("+", "-").replace("/", "_") + "=" * (-len(cleaned) % 4)
        )
    except (binascii.Error, ValueError) as err:
        raise ValueError(_KEY_FORMAT) from err
    if len(key) != KEY_BYTES:
        raise ValueError(_KEY_FORMAT)
    return key


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sealer:
    """Seals and opens secret values with one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a config key is {KEY_BYTES} bytes")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(b"metrica-fleet config key\0" + key).hexdigest()[:8]

    @classmethod
    def from_setting(cls, text: str) -> Sealer:
        return cls(decode_key(text))

    def seal(self, value: str, *, binding: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, value.encode("utf-8"), binding.encode("utf-8"))
        return f"{FORMAT}.{self.key_id}.{_b64(nonce + sealed)}"

    def open(self, sealed: str, *, binding: str) -> str:
        version, key_id, body = _parts(sealed)
        if version != FORMAT:
            raise SecretUnreadable(f"a secret value in an unknown format ({version[:8]!r})")
        if key_id != self.key_id:
            raise SecretUnreadable(
                f"a secret value sealed under key {key_id[:8]}, but OVERLORD_CONFIG_KEY is "
                f"key {self.key_id}"
            )
        try:
            raw = _unb64(body)
            plain = self._aead.decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], binding.encode("utf-8")
            )
        except (InvalidTag, binascii.Error, ValueError) as err:
            raise SecretUnreadable(f"a secret value of {binding} fails authentication") from err
        return plain.decode("utf-8")


def _parts(sealed: str) -> tuple[str, str, str]:
    version, _, rest = sealed.partition(".")
    key_id, _, body = rest.partition(".")
    return version, key_id, body


def plaintext_bytes(sealed: str) -> int:
    """How many bytes the sealed value holds, without the key (for the scope's size bound)."""
    try:
        return max(len(_unb64(_parts(sealed)[2])) - NONCE_BYTES - TAG_BYTES, 0)
    except (binascii.Error, ValueError):
        return 0
