"""A bootloader release from the release repository, verified by TUF before any byte is used.

The three targets ``bootloader/<family>/<version>/{pieeprom.bin,pieeprom.sig,recovery.bin}``
(``fleet-sign add-bootloader``) must each carry custom metadata of kind ``bootloader`` naming
this version and this board's family, and allow this updater's version
(``min_updater_version``); the image's ``BUILD_TIMESTAMP`` must be the instant the signed
version stands for (``fleetcore.eeprom.release_version``). Anything else is refused with one
line before anything is staged. Unsigned or tampered bytes never get this far: python-tuf
checks each target's length and hash against the signed metadata.
"""

from __future__ import annotations

from fleetcore import eeprom
from fleetcore.errors import FormatError
from fleetcore.release import BOOTLOADER_FILES, Hardware, bootloader_target
from fleetcore.version import Version
from signing.client import ReleaseClient
from signing.errors import SigningError
from signing.targets import TargetKind
from updater.bootloader.update import BootloaderRelease, BootloaderUpdater
from updater.errors import BootloaderError


def fetch_bootloader(
    client: ReleaseClient, family: Hardware, version: Version, *, updater_version: Version
) -> BootloaderRelease:
    """Refresh TUF and read the verified files of bootloader release ``version``."""
    files: dict[str, bytes] = {}
    try:
        client.refresh()
        for name in BOOTLOADER_FILES:
            target = client.get_target(bootloader_target(family, version, name))
            custom = target.custom
            if custom is None or custom.kind is not TargetKind.BOOTLOADER:
                raise BootloaderError(f"{target.name} carries no bootloader release metadata")
            if custom.version != version:
                raise BootloaderError(f"{target.name} is signed as version {custom.version}")
            if family not in custom.hardware:
                families = ", ".join(h.value for h in custom.hardware)
                raise BootloaderError(
                    f"bootloader {version} is built for {families}, this is {family.value}"
                )
            if (
                custom.min_updater_version is not None
                and updater_version < custom.min_updater_version
            ):
                raise BootloaderError(
                    f"bootloader {version} needs updater {custom.min_updater_version} or later, "
                    f"this is {updater_version}",
                    hint="install a newer OS release first",
                )
            files[name] = client.read(target)
    except SigningError as err:
        raise BootloaderError(f"bootloader {version}: {err}") from err
    image, sig, recovery = (files[name] for name in BOOTLOADER_FILES)
    try:
        built = eeprom.load_image(image, family).timestamp
        signed = eeprom.release_timestamp(version)
    except FormatError as err:
        raise BootloaderError(f"bootloader {version}: {err}") from err
    if built != signed:
        raise BootloaderError(
            f"bootloader {version}: the image's BUILD_TIMESTAMP {built} is not its signed "
            f"version's {signed}"
        )
    return BootloaderRelease(family=family, image=image, sig=sig, recovery=recovery)


def install_from(
    updater: BootloaderUpdater,
    client: ReleaseClient,
    version: Version,
    *,
    updater_version: Version,
) -> bool:
    """Fetch, verify, stage and reboot (True), or False when ``version`` already runs; a
    refusal is reported to the Overlord and raised."""
    try:
        release = fetch_bootloader(client, updater.family, version, updater_version=updater_version)
    except BootloaderError as err:
        updater.refused(err, version)
        raise
    return updater.install(release, version=version)
