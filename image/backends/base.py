"""The interface every rootfs backend implements, and the inputs they share."""

from __future__ import annotations

import abc
from enum import StrEnum
from pathlib import Path

from image import encrypteddata
from image.backends import workdir
from image.config import BuildConfig

# The repository checkout this package runs from: pi-gen-config/ and the updater unit live here.
SOURCE_ROOT = Path(__file__).resolve().parents[2]
STAGE_DIR = SOURCE_ROOT / "pi-gen-config" / "stage-fleet"
UPDATER_UNIT = SOURCE_ROOT / "updater" / "systemd" / "fleet-updater.service"
ROOTFS = "rootfs"


def stage_settings(config: BuildConfig) -> dict[str, str]:
    """The build config's choices that stage-fleet records in the rootfs (both backends)."""
    return {
        "TARGET_HOSTNAME": config.hostname,
        "FLEET_DATA_PARTITION": encrypteddata.setting(config.encrypt_data),
    }


class BackendName(StrEnum):
    DEBOOTSTRAP = "debootstrap"
    PI_GEN = "pi-gen"


class Backend(abc.ABC):
    """Builds a fleet rootfs folder (with ``boot/firmware``) that ``assemble`` turns into a disk."""

    def __init__(self, config: BuildConfig) -> None:
        self.config = config

    def build(self, out: Path) -> Path:
        """Build the rootfs into ``out/rootfs`` and return that (absolute) path.

        ``out`` is made absolute first: stage scripts run in other folders. SIGINT, SIGTERM and
        SIGHUP become :class:`image.errors.BuildInterrupted`, so mounts and partial output are
        cleaned up on the way out.
        """
        with workdir.signals_raise():
            return self._build(out.resolve())

    @abc.abstractmethod
    def _build(self, out: Path) -> Path:
        """Build into ``out/rootfs`` (``out`` is absolute)."""
