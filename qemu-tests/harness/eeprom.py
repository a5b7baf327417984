"""The board's EEPROM bootloader as the harness plays it (issue 19, ADR 0078).

The SPI flash is a file on the host. At every power-on, before the firmware picks a
partition, the boot ROM runs a ``recovery.bin`` staged on the config partition: when
``pieeprom.upd`` is an image for the board that ``pieeprom.sig`` names, it is "flashed" (the
host file replaced) and recovery.bin renames itself ``recovery.000``; otherwise the EEPROM is
unchanged (``fleetcore.eeprom.recovery_flash``, the rules shared with the updater's simulated
firmware). Then the firmware publishes the running bootloader on the config partition:
``simfw/bootloader_version`` is what ``vcgencmd bootloader_version`` prints and
``simfw/eeprom_config`` what ``rpi-eeprom-config`` prints, which the guest's updater reads
through its simulated firmware backend (``updater.firmware.simulated``).

Secure boot (ADR 0084): the running image's ``SIGNED_BOOT`` and customer key
(:mod:`fleetcore.eepromkey`) are the board's signed-boot state (:attr:`SimulatedEeprom.boot_key`).
An OTP-locked board (``otp_key_sha256``: the fingerprint of the key whose hash is in OTP) has
a ROM that takes only an EEPROM for that key: an update that is not in signed-boot mode under
it (a rollover's open step, or a close step under another key) is refused and the EEPROM is
unchanged. The real ROM checks the update's signature against the OTP key; the harness
checks the key the update embeds, which is what decides what the board boots next.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from fleetcore import bootsig, eeprom, eepromkey
from fleetcore.release import Hardware
from harness.disk import FatVolume

VERSION_FILE = "simfw/bootloader_version"
CONFIG_FILE = "simfw/eeprom_config"


class SimulatedEeprom:
    """A board's SPI flash in ``flash`` (created with ``image`` when missing)."""

    def __init__(
        self,
        flash: Path,
        family: Hardware,
        *,
        image: bytes,
        boot_order: str = "0xf41",
        otp_key_sha256: str | None = None,
    ) -> None:
        self.flash = flash
        self.family = family
        self.boot_order = boot_order
        self.otp_key_sha256 = otp_key_sha256
        if not flash.exists():
            eeprom.load_image(image, family)  # refuse a bad image before it is the flash
            flash.write_bytes(image)

    @property
    def running(self) -> eeprom.EepromImage:
        return eeprom.load_image(self.flash.read_bytes(), self.family)

    @property
    def boot_key(self) -> rsa.RSAPublicKey | None:
        """The customer key the running bootloader checks boot.sig with: its embedded key
        when its config has ``SIGNED_BOOT=1``, else None (signed boot off)."""
        state = eepromkey.read(self.flash.read_bytes())
        return state.key if state.signed_boot else None

    def _otp_refusal(self, image: eeprom.EepromImage) -> str | None:
        if self.otp_key_sha256 is None:
            return None
        state = eepromkey.read(image.data)
        if (
            state.signed_boot
            and state.key
            and bootsig.fingerprint(state.key) == self.otp_key_sha256
        ):
            return None
        return (
            f"recovery.bin refused pieeprom.upd: the boot ROM takes only an EEPROM for the OTP "
            f"key {self.otp_key_sha256}, this one is {state.describe()}; EEPROM unchanged"
        )

    def power_on(self, config: FatVolume) -> str:
        """The ROM's recovery.bin, then what the firmware tells the guest; one line saying
        what the ROM did ("" when nothing was staged)."""
        current, action = self.running, ""
        recovery = config.read("recovery.bin")
        if recovery is not None:
            flashed, action = eeprom.recovery_flash(
                current, config.read("pieeprom.upd"), config.read("pieeprom.sig")
            )
            refused = None if flashed is current else self._otp_refusal(flashed)
            if refused is not None:
                action = refused
            elif flashed is not current:
                self.flash.write_bytes(flashed.data)
                config.write("recovery.000", recovery)
                config.delete("recovery.bin")
                current = flashed
        config.write(VERSION_FILE, eeprom.version_output(current))
        config.write(CONFIG_FILE, f"[all]\nBOOT_ORDER={self.boot_order}\n".encode())
        return action
