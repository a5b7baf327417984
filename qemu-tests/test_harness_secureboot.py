"""The simulated bootloader in signed-boot and ramdisk mode: boot.sig against the customer
key, then kernel, initramfs and cmdline.txt from inside boot.img (harness/secureboot.py).

The boot images are made and signed by the image builder's own code (image.secureboot), so
the harness checks exactly what ``fleet-image assemble --boot-key`` writes.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from harness import autoboot, secureboot
from harness.__main__ import main
from harness.board import SimulatedPi
from harness.disk import FatVolume, fat_volume
from harness.firmware import BootFiles, load_boot_files
from harness.qemu import End
from harness.testdisk import HEALTHY_MARKER, fat_card, set_plan

from fleetcore import bootsig
from image.secureboot import BootSigner

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
