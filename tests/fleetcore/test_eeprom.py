"""rpi-eeprom's file formats (fleetcore.eeprom): the image's size and build timestamp, the
pieeprom.sig format, and the fleet version a bootloader build stands for."""

from __future__ import annotations

import pytest

from fleetcore import eeprom
from fleetcore.release import Hardware
from fleetcore.version import Version
from tests.updater.eeprom_board import eeprom_image, eeprom_sig

PI4_2024_04_15 = 1713186734


def test_sig_round_trips_and_refuses_garbage() -> None:
    data = eeprom_image(Hardware.PI4, PI4_2024_04_15)
    loaded = eeprom.load_sig(eeprom_sig(data) + b"target-soc: 2711\n")
    expected = eeprom.EepromSig(eeprom.load_image(data, Hardware.PI4).sha256, 1700000000, "2711")
    assert loaded == expected
    assert eeprom.load_sig(loaded.dump()) == loaded
    for bad in (b"", b"nothex\n", eeprom_sig(data) + b"ts: 1\n", eeprom_sig(data) + b"evil: 1\n"):
        with pytest.raises(eeprom.EepromFormatError, match="pieeprom.sig"):
            eeprom.load_sig(bad)


def test_image_checks_size_and_build_timestamp() -> None:
    assert eeprom.load_image(eeprom_image(Hardware.PI5, 5, ab=True), Hardware.PI5).ab_capable
    assert not eeprom.load_image(eeprom_image(Hardware.PI5, 5), Hardware.PI5).ab_capable
    with pytest.raises(eeprom.EepromFormatError, match="the pi5 flash size"):
        eeprom.load_image(eeprom_image(Hardware.PI5, 5), Hardware.PI4)
    with pytest.raises(eeprom.EepromFormatError, match="no BUILD_TIMESTAMP"):
        eeprom.load_image(bytes(512 * 1024), Hardware.PI4)
    two = bytearray(eeprom_image(Hardware.PI4, 5))
    two[9000:9020] = b"BUILD_TIMESTAMP=6\0\0\0"
    with pytest.raises(eeprom.EepromFormatError, match="more than one"):
        eeprom.load_image(bytes(two), Hardware.PI4)
    with pytest.raises(eeprom.EepromFormatError, match="no EEPROM"):
        eeprom.load_image(b"", Hardware.QEMU)


@pytest.mark.parametrize(
    ("timestamp", "version"),
    [(1713186734, "2024.4.15.47534"), (1683786363, "2023.5.11.23163"), (86400, "1970.1.2.0")],
)
def test_release_version_is_the_build_instant(timestamp: int, version: str) -> None:
    assert eeprom.release_version(timestamp) == Version(version)
    assert eeprom.release_timestamp(Version(version)) == timestamp


def test_release_versions_order_as_their_timestamps() -> None:
    stamps = [1669373653, 1683786363, 1683786364, 1713186734]
    versions = [eeprom.release_version(t) for t in stamps]
    assert sorted(versions) == versions


@pytest.mark.parametrize("version", ["1.2.3", "2024.2.30.0", "2024.4.15.86400"])
def test_a_version_that_is_no_build_instant_is_refused(version: str) -> None:
    with pytest.raises(eeprom.EepromFormatError, match="not a bootloader version"):
        eeprom.release_timestamp(Version(version))
