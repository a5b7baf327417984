"""The updater's guard against a rollover's close step arriving out of order (ADR 0084), on
the checked-in EEPROM fixtures (tests/fleetcore/fixtures/eepromkey) and boot keys."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from fleetcore import bootsig, eepromkey
from fleetcore.release import Hardware
from fleetcore.wire import EventKind
from tests.updater.eeprom_board import eeprom_image, eeprom_sig
from tests.updater.test_bootloader import PI4_2023_05_11, PI4_2024_04_15, Device
from updater.bootloader.keyguard import check_close_step
from updater.bootloader.update import BootloaderRelease
from updater.errors import BootloaderError
from updater.fatroot import FatError

ROOT = Path(__file__).parents[1]
EEPROMS = ROOT / "fleetcore" / "fixtures" / "eepromkey"
KEYS = ROOT / "image" / "fixtures" / "bootkeys"
CLOSE_UNDER_CUSTOMER = (EEPROMS / "good-signed.bin").read_bytes()
CUSTOMER = bootsig.load_public_key((KEYS / "customer.pub.pem").read_bytes())
REFUSAL = f"the bootloader release turns signed boot on under key {bootsig.fingerprint(CUSTOMER)}"


def boot_sig(key: str) -> bytes:
    private = serialization.load_pem_private_key((KEYS / key).read_bytes(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    digest = hashlib.sha256(b"boot.img of the committed slot").digest()
    return bootsig.sign(digest, private, ts=1700000000).render()


def test_the_close_step_passes_once_the_committed_slot_is_signed_under_its_key() -> None:
    check_close_step(CLOSE_UNDER_CUSTOMER, lambda: boot_sig("customer.pem"))


@pytest.mark.parametrize(
    ("sig", "why"),
    [
        (lambda: boot_sig("other.pem"), "signature does not verify against the key"),
        (lambda: None, "the committed slot has no boot.sig"),
        (lambda: b"garbage\n", "does not start with a SHA-256"),
    ],
    ids=["other-key", "no-sig", "garbage-sig"],
)
def test_the_close_step_out_of_order_is_one_line_naming_the_key(sig, why: str) -> None:
    with pytest.raises(BootloaderError) as info:
        check_close_step(CLOSE_UNDER_CUSTOMER, sig)
    message = str(info.value)
    assert message.startswith(REFUSAL) and why in message and "\n" not in message


@pytest.mark.parametrize("name", ["good-open.bin", "good-open-with-key.bin"])
def test_a_release_with_signed_boot_off_passes_whatever_the_slot(name: str) -> None:
    def unread() -> bytes | None:
        raise AssertionError("the committed slot is read only for a signed-boot image")

    check_close_step((EEPROMS / name).read_bytes(), unread)


def test_a_damaged_committed_boot_partition_is_one_line() -> None:
    def damaged() -> bytes | None:
        raise FatError("FAT chain of boot.sig loops")

    with pytest.raises(BootloaderError) as caught:
        check_close_step(CLOSE_UNDER_CUSTOMER, damaged)
    assert str(caught.value) == (
        f"{REFUSAL}; cannot read the committed slot's boot.sig: FAT chain of boot.sig loops"
    )


def test_a_malformed_image_is_refused() -> None:
    with pytest.raises(BootloaderError, match="holds 2 pubkey.bin files"):
        check_close_step((EEPROMS / "bad-two-keys.bin").read_bytes(), lambda: None)


def test_the_updater_flashes_nothing_until_the_committed_slot_is_signed_under_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = Device(tmp_path, monkeypatch, Hardware.PI4, PI4_2023_05_11)
    image = eepromkey.with_signed_boot(
        eeprom_image(Hardware.PI4, PI4_2024_04_15), "[all]\n", CUSTOMER
    )
    release = BootloaderRelease(Hardware.PI4, image, eeprom_sig(image), b"recovery")
    device.committed_sig = boot_sig("other.pem")

    with pytest.raises(BootloaderError, match=REFUSAL):
        device.updater.install(release)

    assert device.kinds() == [EventKind.BOOTLOADER_FAILED] and device.reboots == 0
    assert not (device.config_partition / "pieeprom.upd").exists()
    device.committed_sig = boot_sig("customer.pem")
    assert device.updater.install(release) and device.reboots == 1
    assert (device.config_partition / "pieeprom.upd").read_bytes() == image
