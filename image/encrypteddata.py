"""What ``fleet-image assemble --encrypt-data`` puts on the card instead of a data filesystem
(ADR 0076): the device formats LUKS2 itself at first boot, so no key exists on the build host.

- the data partition holds only :data:`BLANK_MARKER` at offset 0 (zeros after it): the one
  sign the initramfs's ``fleet-data-luks`` accepts as "never formatted, safe to format";
- the config partition holds slot A's chunk indexes under :data:`SEED_DIR`, which the initramfs
  copies into the new volume's ``fleet/slots/a/`` so the first update is still seeded;
- cmdline.txt carries :data:`KERNEL_ARG`, which tells the initramfs to open /data through
  LUKS2 (inside the signed boot image when secure boot is on).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from image.errors import InputError

BLANK_MARKER = b"METRICA-FLEET-DATA-UNFORMATTED-1"
"""The first bytes of a data partition the device may format (fleet-data-luks's MARKER)."""
ARG = "fleet.data"
KERNEL_ARG = f"{ARG}=luks"
SEED_DIR = "fleet-seed/a"
"""Slot A's chunk indexes on the config partition, for the initramfs to copy onto /data."""
SETTING_FILE = "usr/share/metrica-fleet/data-partition"
"""Where stage-fleet records the build config's ``encrypt_data`` in the rootfs, as one word:
:data:`LUKS` or :data:`PLAIN` (``FLEET_DATA_PARTITION``, set by both build backends)."""
LUKS = "luks"
PLAIN = "ext4"


def setting(encrypt: bool) -> str:
    """The word stage-fleet records for the build config's ``encrypt_data``."""
    return LUKS if encrypt else PLAIN


def wanted(rootfs: Path, flag: bool | None) -> bool:
    """Whether assemble encrypts /data: the CLI flag when given, else the rootfs's recorded
    build setting; a rootfs built before the setting existed has none and stays plain."""
    if flag is not None:
        return flag
    path = rootfs / SETTING_FILE
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        return False
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read the build setting {path}: {err}") from err
    if value not in (LUKS, PLAIN):
        raise InputError(
            f"{path} holds {value[:80]!r}, not {LUKS} or {PLAIN}",
            hint="rebuild the rootfs, or choose with --encrypt-data / --no-encrypt-data",
        )
    return value == LUKS


def write_blank_data(path: Path) -> None:
    """The data partition's image: the marker alone; the partition's rest stays zero."""
    path.write_bytes(BLANK_MARKER)


def add_seed(config_tree: Path, indexes: Path) -> None:
    """Copy slot A's chunk indexes (the data tree's ``fleet/slots/a``) onto the config tree."""
    target = config_tree / SEED_DIR
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(indexes, target)
