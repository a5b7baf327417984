"""Publish a bootloader release: an rpi-eeprom image, its pieeprom.sig and recovery.bin.

Build-host side of ``fleet-sign add-bootloader``. The image is checked as the device will
check it (``fleetcore.eeprom``: the family's flash size, one ``BUILD_TIMESTAMP``) before
anything is signed; the release's version is that build instant (``release_version``), so a
device can refuse a release whose signed version and image disagree. The sig is written here,
as ``rpi-eeprom-digest`` would, with the build time as its ``ts`` (reproducible). Each of the
three targets carries the same custom metadata: kind ``bootloader``, the version, the one
family, and the oldest updater that may install it.

A boot-key rollover (ADR 0084) publishes the image rewritten first: ``customer_key`` embeds
that RSA-2048 public key as ``pubkey.bin`` with ``SIGNED_BOOT=1`` (the close step),
``signed_boot_off`` sets ``SIGNED_BOOT=0`` and drops the key (the open step); the rest of the
image, its build timestamp and so its version, stay as built.
"""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from fleetcore import bootsig, eeprom, eepromkey
from fleetcore.errors import FormatError
from fleetcore.release import BOOTLOADER_FILES, Hardware, bootloader_target
from fleetcore.version import Version
from signing.errors import RepositoryError
from signing.keys import KeyStore
from signing.repository import add_targets
from signing.targets import TargetCustom, TargetKind, TargetSpec, payload_digest

MAX_RECOVERY_BIN = 1024 * 1024


def _customer_key(path: Path) -> rsa.RSAPublicKey:
    try:
        return bootsig.load_public_key(path.read_bytes())
    except OSError as err:
        raise RepositoryError(f"cannot read the customer key {path}: {err.strerror}") from err
    except FormatError as err:
        raise RepositoryError(f"the customer key {path}: {err}") from err


def publish_bootloader(
    repo: Path,
    keys: KeyStore,
    *,
    family: Hardware,
    image_path: Path,
    recovery_path: Path,
    min_updater_version: Version | None = None,
    customer_key: Path | None = None,
    signed_boot_off: bool = False,
    now: datetime | None = None,
) -> Version:
    """Sign the three files of a bootloader release for ``family``; return its version.
    ``customer_key`` (a PEM file) or ``signed_boot_off``: the close or open step of a rollover."""
    if customer_key is not None and signed_boot_off:
        raise RepositoryError("--customer-key and --signed-boot-off exclude each other")
    key = _customer_key(customer_key) if customer_key is not None else None
    rewrite = customer_key is not None or signed_boot_off
    try:
        data = image_path.read_bytes()
        if rewrite:
            data = eepromkey.with_signed_boot(data, eepromkey.config_text(data), key)
        image = eeprom.load_image(data, family)
        recovery_size = recovery_path.stat().st_size
    except FormatError as err:
        raise RepositoryError(f"{image_path}: {err}") from err
    except OSError as err:
        raise RepositoryError(f"cannot read {err.filename}: {err.strerror}") from err
    if not 0 < recovery_size <= MAX_RECOVERY_BIN:
        raise RepositoryError(f"{recovery_path} is empty or larger than {MAX_RECOVERY_BIN} bytes")
    version = eeprom.release_version(image.timestamp)
    with tempfile.TemporaryDirectory() as scratch:
        sig_path = Path(scratch) / "pieeprom.sig"
        sig_path.write_bytes(eeprom.sig_for(image).dump())
        if rewrite:
            image_path = Path(scratch) / image_path.name
            image_path.write_bytes(data)
        specs = []
        for name, path in zip(BOOTLOADER_FILES, (image_path, sig_path, recovery_path), strict=True):
            size, sha256 = payload_digest(path)
            custom = TargetCustom(
                kind=TargetKind.BOOTLOADER,
                version=version,
                hardware=(family,),
                uncompressed_size=size,
                uncompressed_sha256=sha256,
                min_updater_version=min_updater_version,
            )
            specs.append(TargetSpec(path, bootloader_target(family, version, name), custom))
        add_targets(repo, keys, specs, now=now)
    return version
