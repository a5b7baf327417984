"""Every filesystem location the updater touches, derived from a few configurable roots.

Tests and the fleet simulator run a whole device in a temp directory by moving the roots.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fleetcore import bootsig
from fleetcore.layout import Slot
from fleetcore.release import SLOT_INDEX_DIR


@dataclass(frozen=True)
class Roots:
    """The mount points a device has; each can be moved for tests and simulation."""

    root: Path = Path("/")
    data: Path = Path("/data")
    boot_config: Path = Path("/boot/config")
    device_tree: Path = Path("/proc/device-tree")
    sys: Path = Path("/sys")
    proc: Path = Path("/proc")
    dev: Path = Path("/dev")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Roots:
        """Roots from ``FLEET_ROOT``, ``FLEET_DATA``, ``FLEET_BOOT_CONFIG``, ``FLEET_DEVICE_TREE``,
        ``FLEET_SYS``, ``FLEET_PROC`` and ``FLEET_DEV`` when set."""
        env = os.environ if environ is None else environ
        default = cls()
        return cls(
            root=Path(env.get("FLEET_ROOT", default.root)),
            data=Path(env.get("FLEET_DATA", default.data)),
            boot_config=Path(env.get("FLEET_BOOT_CONFIG", default.boot_config)),
            device_tree=Path(env.get("FLEET_DEVICE_TREE", default.device_tree)),
            sys=Path(env.get("FLEET_SYS", default.sys)),
            proc=Path(env.get("FLEET_PROC", default.proc)),
            dev=Path(env.get("FLEET_DEV", default.dev)),
        )

    def under_root(self, path: Path) -> Path:
        """An absolute path of the running image, moved below ``root``."""
        return self.root / path.relative_to("/") if path.is_absolute() else self.root / path

    @property
    def by_partlabel(self) -> Path:
        """udev's links from GPT partition names to partition nodes."""
        return self.dev / "disk" / "by-partlabel"

    @property
    def boot_id_file(self) -> Path:
        """Changes at every boot: tells "rebooted since" from "agent restarted"."""
        return self.proc / "sys" / "kernel" / "random" / "boot_id"

    @property
    def etc(self) -> Path:
        return self.root / "etc" / "metrica-fleet"

    @property
    def image_config(self) -> Path:
        return self.etc / "updater.yaml"

    @property
    def image_version_file(self) -> Path:
        return self.etc / "version"

    @property
    def boot_keys_dir(self) -> Path:
        """The boot keys the running image accepts on a new slot (:mod:`updater.bootkeys`)."""
        return self.root / bootsig.TRUST_DIR

    @property
    def fleet_yaml(self) -> Path:
        return self.boot_config / "fleet.yaml"

    @property
    def autoboot(self) -> Path:
        return self.boot_config / "autoboot.txt"

    @property
    def fleet(self) -> Path:
        """The updater's own directory on the data partition."""
        return self.data / "fleet"

    @property
    def data_config(self) -> Path:
        return self.fleet / "updater.yaml"

    @property
    def state_file(self) -> Path:
        return self.fleet / "state.json"

    @property
    def bootloader_file(self) -> Path:
        """The bootloader update under way (:mod:`updater.bootloader.pending`)."""
        return self.fleet / "bootloader.json"

    @property
    def staged_file(self) -> Path:
        """The release staged in the inactive slot, waiting for admission (ADR 0082)."""
        return self.fleet / "staged.json"

    @property
    def identity_file(self) -> Path:
        return self.fleet / "identity.json"

    @property
    def device_key_file(self) -> Path:
        """The device's ed25519 private key (:mod:`updater.devicekey`), mode 0600."""
        return self.fleet / "device-key.pem"

    @property
    def reserve_file(self) -> Path:
        """Allocated space released when /data is full (see :mod:`updater.space`)."""
        return self.fleet / "reserve"

    @property
    def firstboot_copy(self) -> Path:
        return self.fleet / "firstboot.yaml"

    @property
    def hostname_file(self) -> Path:
        """What the image's /etc/hostname links to."""
        return self.data / "etc" / "hostname"

    @property
    def nm_connections(self) -> Path:
        """Where the image's /etc/NetworkManager/system-connections lives."""
        return self.data / "etc" / "NetworkManager" / "system-connections"

    @property
    def wifi_country_file(self) -> Path:
        """What the image's /etc/modprobe.d/metrica-wifi-country.conf links to."""
        return self.data / "etc" / "modprobe.d" / "metrica-wifi-country.conf"

    @property
    def tuf_metadata(self) -> Path:
        return self.fleet / "tuf"

    @property
    def install_dir(self) -> Path:
        """The release being installed: verified manifest, indexes and write progress."""
        return self.fleet / "install"

    def slot_dir(self, slot: Slot) -> Path:
        """What a slot holds: its verified chunk indexes, the seed for the next install."""
        return self.data / SLOT_INDEX_DIR / slot.value

    @property
    def queue_dir(self) -> Path:
        return self.fleet / "queue"

    @property
    def health_dirs(self) -> tuple[Path, Path]:
        return (self.etc / "health.d", self.fleet / "health.d")
