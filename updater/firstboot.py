"""The first-boot ``fleet.yaml`` the flasher drops on the config (FAT) partition.

The model is :mod:`fleetcore.firstboot`, shared with ``fleet-image flash``; this module reads
it from a path with the updater's errors, and moves the secrets: after enrolment (and after a
Wi-Fi key is applied on an enrolled device) the enrollment token and Wi-Fi key move to /data
and leave the FAT partition.
"""

from __future__ import annotations

from pathlib import Path

from fleetcore import redact
from fleetcore.atomic import atomic_write, atomic_write_fat, scrub_fat
from fleetcore.errors import FormatError
from fleetcore.firstboot import FirstBoot, WiFi, dump_firstboot
from fleetcore.firstboot import load_firstboot as parse_firstboot
from updater.errors import ConfigError

__all__ = ["FirstBoot", "WiFi", "dump_firstboot", "load_firstboot", "move_secrets"]


def load_firstboot(path: Path) -> FirstBoot:
    """Read ``fleet.yaml``; its secrets are masked in this process's logs from now on."""
    try:
        first = parse_firstboot(path.read_bytes())
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from err
    except FormatError as err:
        raise ConfigError(f"{path}: {err}") from err
    redact.SECRETS.add(first.enrollment_token, first.wifi.psk if first.wifi else None)
    return first


def move_secrets(fat_copy: Path, data_copy: Path) -> None:
    """Keep the full fleet.yaml on /data (0600), then strip its secrets from the FAT copy.

    The /data copy is written first, so a power cut in between leaves the secrets in one
    place or both, never in none.
    """
    if not fat_copy.exists():
        return
    first = load_firstboot(fat_copy)
    if first.enrollment_token is None and (first.wifi is None or first.wifi.psk is None):
        return
    data_copy.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(data_copy, dump_firstboot(first), mode=0o600)
    stripped = dump_firstboot(first.without_secrets())
    # The old file's clusters would keep the secrets in the raw card after the rename.
    scrub_fat(fat_copy, stripped)
    atomic_write_fat(fat_copy, stripped)
