"""The device's ed25519 key pair on /data: made once, before enrolment (ADR 0075).

The private key never leaves the device; enrolment sends the public half, and every later
request to the Overlord is signed with it (:mod:`fleetcore.httpsig`). The file is PKCS#8 PEM,
mode 0600, written atomically, so a power cut leaves no key or the whole key.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from fleetcore.atomic import atomic_write
from updater.errors import UpdaterError

log = logging.getLogger(__name__)

MAX_KEY_FILE = 4096


class DeviceKeyError(UpdaterError):
    """The device key file exists but is not one ed25519 private key."""


def load(path: Path) -> Ed25519PrivateKey | None:
    """The key in ``path``; ``None`` when there is none yet."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_KEY_FILE + 1)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise DeviceKeyError(f"device key {path} is unreadable: {err.strerror}") from err
    if len(data) > MAX_KEY_FILE:
        raise DeviceKeyError(f"device key {path} is longer than {MAX_KEY_FILE} bytes")
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        # Not the exception's text: it may quote the key's bytes.
        raise DeviceKeyError(f"device key {path} is corrupt or truncated") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise DeviceKeyError(f"device key {path} is not an ed25519 key")
    return key


def create(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, pem, mode=0o600)
    return key


def load_or_create(path: Path) -> Ed25519PrivateKey:
    """The device's key, made at first use; a corrupt one is set aside and replaced.

    A replaced key no longer matches the one the Overlord bound at enrolment, so the device's
    requests are refused (401) until an operator rotates its credential and it re-enrols
    (docs/operations.md): one clear error line, never a crash at every start.
    """
    try:
        key = load(path)
    except DeviceKeyError as err:
        aside = path.with_name(f"{path.name}.corrupt")
        log.error("%s; set aside as %s and replaced by a new key", err, aside.name)
        path.replace(aside)
        return create(path)
    return key if key is not None else create(path)
