"""The signed-boot state of an rpi-eeprom image (fleetcore.eepromkey) on checked-in fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from fleetcore import bootsig, eeprom, eepromkey
from fleetcore.release import Hardware

FIXTURES = Path(__file__).parent / "fixtures" / "eepromkey"
KEYS = Path(__file__).parents[1] / "image" / "fixtures" / "bootkeys"
KEY = bootsig.load_public_key((KEYS / "customer.pub.pem").read_bytes())
BAD = {
    "bad-garbage.bin": "no section header at offset 0",
    "bad-truncated-section.bin": "runs past the image",
    "bad-short-key.bin": "pubkey.bin is 128 bytes; an RSA-2048 key is 264",
    "bad-not-rsa2048.bin": "is not an RSA-2048 public key",
    "bad-two-keys.bin": "holds 2 pubkey.bin files",
    "bad-signed-boot-without-key.bin": "SIGNED_BOOT=1 has no customer key",
    "bad-no-config.bin": "has no bootconf.txt",
    "bad-signed-boot-value.bin": "SIGNED_BOOT is 'yes', not 0 or 1",
    "bad-length-past-end.bin": "runs past the image",
}


def _read(name: str) -> eepromkey.KeyState:
    return eepromkey.read((FIXTURES / name).read_bytes())


def test_known_good_fixtures() -> None:
    signed = _read("good-signed.bin")
    assert signed.signed_boot
    assert signed.key is not None and bootsig.fingerprint(signed.key) == bootsig.fingerprint(KEY)
    assert signed.describe() == f"signed boot, customer key {bootsig.fingerprint(KEY)}"
    assert _read("good-open.bin") == eepromkey.KeyState(signed_boot=False, key=None)
    with_key = _read("good-open-with-key.bin")
    assert not with_key.signed_boot and with_key.key is not None
    assert _read("good-no-signed-boot-line.bin").describe() == "signed boot off, no customer key"
    assert eepromkey.read(bytes(4096)) == eepromkey.KeyState(signed_boot=False, key=None)


@pytest.mark.parametrize(("name", "error"), sorted(BAD.items()))
def test_known_bad_fixtures_give_one_clear_error(name: str, error: str) -> None:
    with pytest.raises(eepromkey.EepromKeyError, match=error):
        _read(name)


def test_fixtures_are_what_make_py_writes() -> None:
    assert set(BAD) | {p.name for p in FIXTURES.glob("good-*.bin")} == {
        p.name for p in FIXTURES.glob("*.bin")
    }


def test_key_section_matches_rpi_eeprom_config_layout() -> None:
    content = eepromkey.key_bytes(KEY)
    numbers = KEY.public_numbers()
    assert content == numbers.n.to_bytes(256, "little") + numbers.e.to_bytes(8, "little")
    section = eepromkey.file_section("pubkey.bin", content)
    assert section[:8] == bytes.fromhex("55aaf11f") + (264 + 16).to_bytes(4, "big")
    assert section[8:24] == b"pubkey.bin\0\0" + bytes(4) and len(section) % 8 == 0


def test_a_full_flash_image_round_trips_and_keeps_its_build_timestamp() -> None:
    flash = bytearray(eeprom.IMAGE_SIZE[Hardware.PI4])
    flash[0x8000:0x801B] = b"BUILD_TIMESTAMP=1713186734\0"
    closed = eepromkey.with_signed_boot(bytes(flash), "[all]\nSIGNED_BOOT=0\n", KEY)
    assert eeprom.load_image(closed, Hardware.PI4).timestamp == 1713186734
    assert eepromkey.read(closed).signed_boot
    opened = eepromkey.with_signed_boot(closed, "[all]\nSIGNED_BOOT=1\n", None)
    assert eepromkey.read(opened) == eepromkey.KeyState(signed_boot=False, key=None)
    assert b"SIGNED_BOOT=1" not in opened[:4096]


def test_build_refuses_a_key_that_is_not_rsa_2048_and_a_small_image() -> None:
    big = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    with pytest.raises(eepromkey.EepromKeyError, match="RSA-2048 keys only, not RSA-1024"):
        eepromkey.with_signed_boot(bytes(4096), "", big)
    with pytest.raises(eepromkey.EepromKeyError, match="no room"):
        eepromkey.build(bytes(64), "", KEY)
