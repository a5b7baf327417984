"""The simulated bootloader in signed-boot and ramdisk mode: boot.sig against the customer
key, then kernel, initramfs and cmdline.txt from inside boot.img (harness/secureboot.py).

The boot images are made and signed by the image builder's own code (image.secureboot), so
the harness checks exactly what ``fleet-image assemble --boot-key`` writes.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from harness import autoboot, secureboot
from harness.__main__ import main
from harness.board import SimulatedPi
from harness.disk import FatVolume, fat_volume
from harness.eeprom import SimulatedEeprom
from harness.firmware import BootFiles, load_boot_files
from harness.qemu import End
from harness.testdisk import HEALTHY_MARKER, fat_card, set_plan

from fleetcore import bootsig, eepromkey
from fleetcore.release import Hardware
from image.secureboot import BootSigner
from tests.updater.eeprom_board import eeprom_image, eeprom_sig

KEYS = Path(__file__).parents[1] / "tests" / "image" / "fixtures" / "bootkeys"
CUSTOMER_PUB = (KEYS / "customer.pub.pem").read_bytes()
A, B = 2, 3
LOOSE = ("vmlinuz", "initrd", "cmdline.txt")


def seal(card: Path, label: str, key: str, *, ramdisk_line: bool = True) -> None:
    """Turn a boot partition with loose kernel, initramfs and cmdline.txt into a secure one:
    boot.img of those files, boot.sig signed with ``key``, config.txt with boot_ramdisk=1.
    guest-plan.txt stays on the partition (the guest reads it from there)."""
    boot = fat_volume(card, label=label)
    loose = [name for name in boot.list() if name.lower().startswith(LOOSE)]
    with tempfile.TemporaryDirectory(prefix="seal-") as tmp:
        tree = Path(tmp) / f"{label}-tree"
        tree.mkdir()
        for name in loose:
            boot.copy_out(name, tree / name)
        signer = BootSigner.load(KEYS / key, ts=1700000000)
        outer = signer.seal(tree, Path(tmp), label=label, volume_id="12345678", epoch=1700000000)
        for name in loose:
            boot.delete(name)
        for path in sorted(outer.iterdir()):
            if path.name != "config.txt" or ramdisk_line:
                boot.put(path, path.name)


@pytest.fixture
def small_card(tmp_path: Path) -> Path:
    """config, boot_a, boot_b (FAT) with a stand-in kernel: for the refusals, no QEMU."""
    card = fat_card(tmp_path / "small.img", [("config", 4), ("boot_a", 8), ("boot_b", 8)])
    fat_volume(card, label="config").write("autoboot.txt", autoboot.render(committed=A, trial=B))
    for label in ("boot_a", "boot_b"):
        boot = fat_volume(card, label=label)
        boot.write("vmlinuz-test", f"kernel of {label}".encode() * 1000)
        boot.write("initrd.img", f"initramfs of {label}".encode())
        boot.write("cmdline.txt", f"console=ttyAMA0 fleet.slot={label}\n".encode())
    return card


def _load(card: Path, label: str, dest: Path, key: bytes | None) -> BootFiles | str:
    volume = fat_volume(card, label=label)
    ramdisk = secureboot.open_ramdisk(volume, dest, _key(key))
    return ramdisk if isinstance(ramdisk, str) else load_boot_files(ramdisk, dest)


def _key(pem: bytes | None) -> RSAPublicKey | None:
    return bootsig.load_public_key(pem) if pem else None


def resign(card: Path, label: str, key: str) -> None:
    """Replace ``label``'s boot.sig with one signed by ``key`` over the same boot.img."""
    boot = fat_volume(card, label=label)
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "boot.img"
        boot.copy_out("boot.img", image)
        digest = hashlib.sha256(image.read_bytes()).digest()
    private = serialization.load_pem_private_key((KEYS / key).read_bytes(), password=None)
    assert isinstance(private, RSAPrivateKey)
    boot.write("boot.sig", bootsig.sign(digest, private, ts=1700000000).render())


def test_a_verified_boot_img_gives_the_kernel_inside_it(small_card: Path, tmp_path: Path):
    seal(small_card, "boot_a", "customer.pem")
    assert not any(n.startswith("vmlinuz") for n in fat_volume(small_card, label="boot_a").list())

    files = _load(small_card, "boot_a", tmp_path / "files", CUSTOMER_PUB)

    assert isinstance(files, BootFiles), files
    assert files.kernel.read_bytes() == b"kernel of boot_a" * 1000
    assert files.initrd.read_bytes() == b"initramfs of boot_a"
    assert files.cmdline == "console=ttyAMA0 fleet.slot=boot_a"


def _tamper(card: Path) -> None:
    boot = fat_volume(card, label="boot_a")
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "boot.img"
        boot.copy_out("boot.img", image)
        data = bytearray(image.read_bytes())
        data[-1] ^= 1
        image.write_bytes(bytes(data))
        boot.put(image, "boot.img")


@pytest.mark.parametrize(
    ("spoil", "expected"),
    [
        (lambda card: seal(card, "boot_a", "other.pem"), "does not verify against the key"),
        (lambda card: (seal(card, "boot_a", "customer.pem"), _tamper(card)), "boot.sig names"),
        (
            lambda card: (seal(card, "boot_a", "customer.pem"), _volume(card).delete("boot.sig")),
            "no boot.sig",
        ),
        (
            lambda card: (
                seal(card, "boot_a", "customer.pem"),
                _volume(card).write("boot.sig", b"not a signature\n"),
            ),
            "does not start with a SHA-256",
        ),
        (lambda card: None, "no boot.img (signed boot loads nothing else)"),
    ],
    ids=["wrong-key", "tampered-image", "no-sig", "garbage-sig", "loose-files"],
)
def test_signed_boot_refuses(small_card: Path, tmp_path: Path, spoil, expected: str):
    spoil(small_card)

    reason = _load(small_card, "boot_a", tmp_path / "files", CUSTOMER_PUB)

    assert isinstance(reason, str) and expected in reason, reason
    assert reason.startswith("partition 2: ")


def _volume(card: Path) -> FatVolume:
    return fat_volume(card, label="boot_a")


def test_refused_partition_is_unbootable_without_starting_qemu(small_card: Path, tmp_path):
    seal(small_card, "boot_a", "other.pem")
    pi = SimulatedPi(
        small_card, tmp_path / "board", healthy_marker=HEALTHY_MARKER, customer_key=CUSTOMER_PUB
    )

    record = pi.boot()

    assert (record.partition, record.end, record.seconds) == (A, End.UNBOOTABLE, 0.0)
    assert "secure boot refused boot.img" in record.detail
    assert "does not verify against the key" in pi.console(record)


def test_ramdisk_without_signed_boot_is_not_checked(small_card: Path, tmp_path: Path):
    """An unlocked board with boot_ramdisk=1 loads boot.img whoever signed it."""
    seal(small_card, "boot_a", "other.pem")
    volume = fat_volume(small_card, label="boot_a")
    assert secureboot.wants_ramdisk(volume)

    files = _load(small_card, "boot_a", tmp_path / "files", None)

    assert isinstance(files, BootFiles) and files.cmdline.endswith("fleet.slot=boot_a")


def test_cli_customer_key_that_cannot_be_read_is_one_error_line(small_card, tmp_path, capsys):
    code = main([str(small_card), "--healthy-marker", "x", "--customer-key", str(tmp_path)])

    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read the customer key" in err[0]


@pytest.mark.qemu
def test_secure_card_boots_the_kernel_from_boot_img(card: Path, tmp_path: Path):
    for label in ("boot_a", "boot_b"):
        seal(card, label, "customer.pem")
    pi = SimulatedPi(
        card, tmp_path / "board", healthy_marker=HEALTHY_MARKER, customer_key=CUSTOMER_PUB
    )

    record = pi.boot()

    assert (record.partition, record.end, record.healthy) == (A, End.POWEROFF, True)
    assert not any(n.startswith("vmlinuz") for n in fat_volume(card, label="boot_a").list())


@pytest.mark.qemu
def test_trial_signed_by_the_wrong_key_falls_back_then_a_good_one_boots(card: Path, tmp_path):
    seal(card, "boot_a", "customer.pem")
    seal(card, "boot_b", "other.pem")
    set_plan(card, "boot_a", normal="healthy request-tryboot reboot", tryboot="poweroff")
    set_plan(card, "boot_b", normal="poweroff", tryboot="healthy poweroff")
    pi = SimulatedPi(
        card, tmp_path / "board", healthy_marker=HEALTHY_MARKER, customer_key=CUSTOMER_PUB
    )

    first, refused, back = pi.boot(), pi.boot(), pi.boot()

    assert (first.partition, first.end) == (A, End.REBOOT)
    assert (refused.partition, refused.tryboot, refused.end) == (B, True, End.UNBOOTABLE)
    assert "does not verify against the key" in refused.detail
    assert (back.partition, back.tryboot, back.end) == (A, False, End.REBOOT)

    resign(card, "boot_b", "customer.pem")

    trial = pi.boot()

    assert (trial.partition, trial.tryboot, trial.end) == (B, True, End.POWEROFF)
    assert trial.healthy
    assert "guest: boot_partition=3 tryboot=1" in pi.console(trial)


# Boot-key rollover (ADR 0084): the bootloader's key comes from the running EEPROM image. The
# slots are sealed without cmdline.txt, so a slot whose boot.sig verifies ends at the
# firmware's "no cmdline.txt" (no QEMU) and one that does not at "secure boot refused".

K1, K2 = "customer.pem", "other.pem"
K1_PUB = bootsig.load_public_key(CUSTOMER_PUB)
K2_PUB = bootsig.load_public_key((KEYS / "other.pub.pem").read_bytes())
PI4_X, PI4_Y1, PI4_Y2 = 1683786363, 1713186734, 1713273134
VERIFIED, REFUSED = "no cmdline.txt", "does not verify against the key"


def _bootloader(timestamp: int, key: RSAPublicKey | None) -> bytes:
    """A Pi 4 bootloader release: signed boot under ``key``, or off (None)."""
    return eepromkey.with_signed_boot(eeprom_image(Hardware.PI4, timestamp), "[all]\n", key)


def _stage(card: Path, image: bytes) -> None:
    config = fat_volume(card, label="config")
    config.write("pieeprom.upd", image)
    config.write("pieeprom.sig", eeprom_sig(image))
    config.write("recovery.bin", b"recovery")


def _k1_board(card: Path, tmp_path: Path, *, otp: bool = False) -> SimulatedPi:
    for label in ("boot_a", "boot_b"):
        fat_volume(card, label=label).delete("cmdline.txt")
        seal(card, label, K1)
    flash = SimulatedEeprom(
        tmp_path / "flash.bin",
        Hardware.PI4,
        image=_bootloader(PI4_X, K1_PUB),
        otp_key_sha256=bootsig.fingerprint(K1_PUB) if otp else None,
    )
    pi = SimulatedPi(card, tmp_path / "board", healthy_marker=HEALTHY_MARKER, eeprom=flash)
    first = pi.boot()
    assert (first.partition, first.end) == (A, End.UNBOOTABLE) and VERIFIED in first.detail
    return pi


def _slot_boots(pi: SimulatedPi, label: str, dest: Path) -> str:
    """What the bootloader now says of a slot: VERIFIED or the refusal."""
    files = secureboot.open_ramdisk(fat_volume(pi.disk, label=label), dest, pi.boot_key)
    assert isinstance(files, FatVolume | str)
    return files if isinstance(files, str) else VERIFIED


def _fingerprint(pi: SimulatedPi) -> str | None:
    return bootsig.fingerprint(pi.boot_key) if pi.boot_key else None


def test_the_running_eeprom_image_holds_the_key_signed_boot_checks(small_card, tmp_path):
    pi = _k1_board(small_card, tmp_path)
    assert pi.customer_key is None and _fingerprint(pi) == bootsig.fingerprint(K1_PUB)
    state = fat_volume(small_card, label="config").read("simfw/boot.json")
    assert state is not None and json.loads(state)["signed"] is True


def test_a_direct_rollover_bricks_the_board(small_card: Path, tmp_path: Path):
    pi = _k1_board(small_card, tmp_path)
    _stage(small_card, _bootloader(PI4_Y1, K2_PUB))

    record = pi.boot()

    assert record.eeprom.startswith("recovery.bin flashed the EEPROM")
    assert _fingerprint(pi) == bootsig.fingerprint(K2_PUB)
    assert (record.partition, record.end) == (A, End.UNBOOTABLE) and REFUSED in record.detail
    assert REFUSED in _slot_boots(pi, "boot_b", tmp_path / "b")  # no slot verifies under K2


def test_the_three_release_rollover_keeps_a_bootable_slot_at_every_step(small_card, tmp_path):
    pi = _k1_board(small_card, tmp_path)
    config = fat_volume(small_card, label="config")

    _stage(small_card, _bootloader(PI4_Y1, None))  # (1) open
    opened = pi.boot()
    assert opened.eeprom.startswith("recovery.bin flashed") and pi.boot_key is None
    assert VERIFIED in opened.detail

    resign(small_card, "boot_b", K2)  # (2) the OS signed with K2 in the inactive slot ...
    config.write("autoboot.txt", autoboot.render(committed=B, trial=A))  # ... committed
    assert VERIFIED in pi.boot().detail

    _stage(small_card, _bootloader(PI4_Y2, K2_PUB))  # (3) close under K2
    closed = pi.boot()
    assert closed.eeprom.startswith("recovery.bin flashed")
    assert _fingerprint(pi) == bootsig.fingerprint(K2_PUB)
    assert (closed.partition, closed.end) == (B, End.UNBOOTABLE) and VERIFIED in closed.detail
    assert REFUSED in _slot_boots(pi, "boot_a", tmp_path / "a")  # K1's slot is now refused


@pytest.mark.parametrize(
    ("update", "state"),
    [
        (lambda: _bootloader(PI4_Y1, None), "signed boot off, no customer key"),
        (
            lambda: _bootloader(PI4_Y1, K2_PUB),
            f"signed boot, customer key {bootsig.fingerprint(K2_PUB)}",
        ),
    ],
    ids=["open-step", "close-under-k2"],
)
def test_an_otp_locked_board_refuses_both_firmware_steps(small_card, tmp_path, update, state):
    pi = _k1_board(small_card, tmp_path, otp=True)
    _stage(small_card, update())

    record = pi.boot()

    assert record.eeprom == (
        "recovery.bin refused pieeprom.upd: the boot ROM takes only an EEPROM for the OTP key "
        f"{bootsig.fingerprint(K1_PUB)}, this one is {state}; EEPROM unchanged"
    )
    assert pi.eeprom is not None and pi.eeprom.running.timestamp == PI4_X
    assert _fingerprint(pi) == bootsig.fingerprint(K1_PUB) and VERIFIED in record.detail


def test_an_otp_locked_board_takes_a_newer_bootloader_for_its_own_key(small_card, tmp_path):
    pi = _k1_board(small_card, tmp_path, otp=True)
    _stage(small_card, _bootloader(PI4_Y1, K1_PUB))

    record = pi.boot()

    assert record.eeprom.startswith("recovery.bin flashed") and VERIFIED in record.detail
    assert pi.eeprom is not None and pi.eeprom.running.timestamp == PI4_Y1
