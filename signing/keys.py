"""Ed25519 signing keys on disk, split into offline and online custody.

Layout of a key directory::

    KEYDIR/offline/root-1.key ... root-N.key   root keys (threshold in root.json)
    KEYDIR/offline/targets.key                 signs releases on the build host / CI
    KEYDIR/online/snapshot.key                 the Overlord re-signs these two
    KEYDIR/online/timestamp.key
    KEYDIR/retired/                            keys replaced by a rotation

Each file is a PKCS#8 PEM, mode 0600, optionally encrypted with the passphrase in
``FLEET_SIGN_PASSPHRASE``. The Overlord gets a copy of ``online/`` only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner, SSlibKey

from fleetcore.atomic import atomic_write, fsync_dir
from signing.errors import KeyStoreError

PASSPHRASE_ENV = "FLEET_SIGN_PASSPHRASE"  # noqa: S105 - a variable name
ONLINE_ROLES = ("snapshot", "timestamp")
OFFLINE_ROLES = ("root", "targets")
_ROOT_KEY = re.compile(r"^root-(\d+)\.key$")


def _passphrase() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode() if value else None


def private_key_pem(key: Ed25519PrivateKey, passphrase: bytes | None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def signer_from_key(key: Ed25519PrivateKey) -> CryptoSigner:
    public = SSlibKey.from_crypto(key.public_key(), scheme="ed25519")
    return CryptoSigner(key, public)


def write_key(path: Path, key: Ed25519PrivateKey, passphrase: bytes | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, private_key_pem(key, passphrase), mode=0o600)


def read_key(path: Path) -> CryptoSigner:
    """Load one key file; an encrypted file needs ``FLEET_SIGN_PASSPHRASE``."""
    try:
        pem = path.read_bytes()
    except OSError as err:
        raise KeyStoreError(f"cannot read key {path}: {err.strerror}") from err
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyStoreError(
            f"key {path} is readable by others (mode {mode:o})", hint=f"chmod 600 {path}"
        )
    passphrase = _passphrase() if b"ENCRYPTED" in pem else None
    if b"ENCRYPTED" in pem and passphrase is None:
        raise KeyStoreError(
            f"key {path} is encrypted", hint=f"set {PASSPHRASE_ENV} to its passphrase"
        )
    try:
        key = serialization.load_pem_private_key(pem, passphrase)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise KeyStoreError(f"cannot load key {path}: wrong passphrase or not a PEM key") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyStoreError(f"key {path} is not an ed25519 key")
    return signer_from_key(key)


@dataclass
class KeyStore:
    """The signers a key directory holds; roles whose keys are absent are simply missing."""

    keydir: Path
    signers: dict[str, list[CryptoSigner]] = field(default_factory=dict)

    @classmethod
    def generate(
        cls,
        keydir: Path,
        *,
        root_keys: int = 1,
        passphrase: bytes | None = None,
    ) -> KeyStore:
        """Create fresh keys; refuses to overwrite an existing key directory."""
        if root_keys < 1:
            raise KeyStoreError("at least one root key is needed")
        if (keydir / "offline").exists() or (keydir / "online").exists():
            raise KeyStoreError(
                f"{keydir} already holds keys", hint="choose an empty --keys directory"
            )
        keydir.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = cls(keydir)
        plan = [("root", "offline", f"root-{i}.key", passphrase) for i in range(1, root_keys + 1)]
        plan.append(("targets", "offline", "targets.key", passphrase))
        # Online keys stay unencrypted: the Overlord signs unattended.
        plan += [(role, "online", f"{role}.key", None) for role in ONLINE_ROLES]
        for role, folder, name, secret in plan:
            key = Ed25519PrivateKey.generate()
            write_key(keydir / folder / name, key, secret)
            store.signers.setdefault(role, []).append(signer_from_key(key))
        return store

    @classmethod
    def open(cls, keydir: Path) -> KeyStore:
        """Load every key present; an online-only directory (the Overlord's) is fine."""
        if not keydir.is_dir():
            raise KeyStoreError(f"key directory {keydir} does not exist")
        store = cls(keydir)
        offline = keydir / "offline"
        if offline.is_dir():
            numbered = {
                int(match.group(1)): path
                for path in offline.iterdir()
                if (match := _ROOT_KEY.fullmatch(path.name))
            }
            root_files = [numbered[n] for n in sorted(numbered)]
            if root_files:
                store.signers["root"] = [read_key(p) for p in root_files]
            if (offline / "targets.key").exists():
                store.signers["targets"] = [read_key(offline / "targets.key")]
        for role in ONLINE_ROLES:
            path = keydir / "online" / f"{role}.key"
            if path.exists():
                store.signers[role] = [read_key(path)]
        if not store.signers:
            raise KeyStoreError(
                f"no keys found in {keydir}", hint="create them with fleet-sign init"
            )
        return store

    def get(self, role: str) -> list[CryptoSigner]:
        signers = self.signers.get(role)
        if not signers:
            where = "offline" if role in OFFLINE_ROLES else "online"
            raise KeyStoreError(
                f"no {role} key in {self.keydir}",
                hint=f"the {role} key lives in {self.keydir / where}",
            )
        return signers

    def replace(
        self,
        role: str,
        count: int,
        passphrase: bytes | None = None,
        *,
        new_key: Callable[[], Ed25519PrivateKey] = Ed25519PrivateKey.generate,
    ) -> list[CryptoSigner]:
        """Retire the role's key files and write ``count`` new ones; returns the new signers."""
        retired = self.keydir / "retired"
        retired.mkdir(exist_ok=True, mode=0o700)
        online = role in ONLINE_ROLES
        folder = self.keydir / ("online" if online else "offline")
        old = sorted(folder.glob("root-*.key")) if role == "root" else [folder / f"{role}.key"]
        serial = len(list(retired.iterdir()))
        for path in old:
            if path.exists():
                serial += 1
                path.replace(retired / f"{serial:03d}-{path.name}")
        fsync_dir(folder)
        names = (
            [f"root-{i}.key" for i in range(1, count + 1)] if role == "root" else [f"{role}.key"]
        )
        signers = []
        for name in names:
            key = new_key()
            write_key(folder / name, key, None if online else passphrase)
            signers.append(signer_from_key(key))
        self.signers[role] = signers
        return signers
