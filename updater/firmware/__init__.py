"""Bootloader backends behind one small interface (read boot state, request a trial boot)."""

from __future__ import annotations

from updater.config import FirmwareBackend, FirmwareConfig
from updater.firmware.base import BootState, Firmware
from updater.firmware.simulated import SimulatedFirmware
from updater.firmware.tryboot import TrybootFirmware
from updater.paths import Roots

__all__ = ["BootState", "Firmware", "open_firmware"]


def open_firmware(config: FirmwareConfig, roots: Roots) -> Firmware:
    backends: dict[FirmwareBackend, type[Firmware]] = {
        FirmwareBackend.TRYBOOT: TrybootFirmware,
        FirmwareBackend.SIMULATED: SimulatedFirmware,
    }
    return backends[config.backend](config, roots)
