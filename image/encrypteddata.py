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

BLANK_MARKER = b"METRICA-FLEET-DATA-UNFORMATTED-1"
"""The first bytes of a data partition the device may format (fleet-data-luks's MARKER)."""
ARG = "fleet.data"
KERNEL_ARG = f"{ARG}=luks"
SEED_DIR = "fleet-seed/a"
"""Slot A's chunk indexes on the config partition, for the initramfs to copy onto /data."""


def write_blank_data(path: Path) -> None:
    """The data partition's image: the marker alone; the partition's rest stays zero."""
    path.write_bytes(BLANK_MARKER)


def add_seed(config_tree: Path, indexes: Path) -> None:
    """Copy slot A's chunk indexes (the data tree's ``fleet/slots/a``) onto the config tree."""
    target = config_tree / SEED_DIR
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(indexes, target)
