"""``fleet-image assemble --boot-key``: signed boot.img + boot.sig per slot (ADR 0070)."""

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from fleetcore import bootsig
from fleetcore.release import ImageName
from image import assemble, release, secureboot
from image.cli import main
from tests.image.conftest import EPOCH, Built, make_rootfs, request
from tests.image.test_assemble import _fails_cleanly, _part, slot_b_boot
from updater import bootkeys

KEYS = Path(__file__).parent / "fixtures" / "bootkeys"
MTOOLS = {"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}


@pytest.fixture(scope="session")
def secure(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("secure") / "out"
    assemble.assemble(request(rootfs, out, boot_key=KEYS / "customer.pem"))
    return Built(rootfs, out)


def _partition_copy(built: Built, label: str, dest: Path) -> Path:
    start, size = _part(built, label)
    with built.disk.open("rb") as handle:
        handle.seek(start)
        dest.write_bytes(handle.read(size))
    return dest


def _fat(image: Path, *args: str) -> bytes:
    return subprocess.run(
        [args[0], "-i", str(image), *args[1:]], capture_output=True, check=True, env=MTOOLS
    ).stdout


def _names(image: Path) -> list[str]:
    listing = _fat(image, "mdir", "-/", "-b", "::/").decode()
    return sorted(line[3:] for line in listing.splitlines() if not line.endswith("/"))


def _slot_files(built: Built, slot: str, work: Path) -> tuple[Path, Path]:
    """boot.img and boot.sig of one slot, copied out of the disk image."""
    work.mkdir(parents=True, exist_ok=True)
    part = _partition_copy(built, f"boot_{slot}", work / "part.vfat")
    for name in (secureboot.BOOT_IMG, secureboot.BOOT_SIG):
        _fat(part, "mcopy", f"::/{name}", str(work / name))
    return work / secureboot.BOOT_IMG, work / secureboot.BOOT_SIG


@pytest.mark.parametrize("slot", ["a", "b"])
def test_boot_partition_holds_only_the_signed_image(secure: Built, slot: str, tmp_path: Path):
    part = _partition_copy(secure, f"boot_{slot}", tmp_path / "part.vfat")
    assert _names(part) == ["boot.img", "boot.sig", "config.txt"]
    config = _fat(part, "mtype", "::/config.txt").decode()
    assert "boot_ramdisk=1" in config.splitlines()


@pytest.mark.parametrize("slot", ["a", "b"])
def test_boot_img_holds_the_slots_boot_files(secure: Built, slot: str, tmp_path: Path):
    image, _sig = _slot_files(secure, slot, tmp_path)
    names = {name.lower() for name in _names(image)}
    for wanted in ("vmlinuz", "initrd.img", "config.txt", "cmdline.txt", "start4.elf"):
        assert wanted in names
    assert "overlays/vc4-kms-v3d.dtbo" in names
    assert "bcm2712-rpi-5-b.dtb" in names
    cmdline = _fat(image, "mtype", "::/cmdline.txt").decode().split()
    assert f"root=PARTLABEL=system_{slot}" in cmdline
    assert "kernel=vmlinuz" in _fat(image, "mtype", "::/config.txt").decode()
    # A FAT the bootloader reads: FAT12/16/32 boot sector signature and a clean check.
    assert image.read_bytes()[510:512] == b"\x55\xaa"
    subprocess.run(["fsck.fat", "-n", str(image)], capture_output=True, check=True)


@pytest.mark.parametrize("slot", ["a", "b"])
def test_openssl_verifies_the_signature(secure: Built, slot: str, tmp_path: Path):
    image, sig_file = _slot_files(secure, slot, tmp_path)
    sig = bootsig.parse(sig_file.read_bytes())
    assert sig.sha256 == hashlib.sha256(image.read_bytes()).hexdigest()
    assert sig.ts == EPOCH
    assert sig.signature is not None
    raw = tmp_path / "sig.bin"
    raw.write_bytes(sig.signature)

    def openssl_verify(pub: str) -> subprocess.CompletedProcess[bytes]:
        argv = ["openssl", "dgst", "-sha256", "-verify", str(KEYS / pub), "-signature", str(raw)]
        return subprocess.run([*argv, str(image)], capture_output=True)

    good = openssl_verify("customer.pub.pem")
    assert good.returncode == 0 and b"Verified OK" in good.stdout, good
    wrong = openssl_verify("other.pub.pem")
    assert wrong.returncode != 0 and b"Verification failure" in wrong.stdout, wrong


def test_boot_sig_lines_are_rpi_eeprom_digests(secure: Built, tmp_path: Path):
    _image, sig_file = _slot_files(secure, "a", tmp_path)
    lines = sig_file.read_text().splitlines()
    assert len(lines) == 3
    assert len(lines[0]) == 64 and lines[1] == f"ts: {EPOCH}"
    assert lines[2].startswith("rsa2048: ") and len(lines[2]) == len("rsa2048: ") + 512


def test_boot_img_and_disk_are_reproducible(secure: Built, tmp_path: Path):
    copy = tmp_path / "rootfs-copy"
    shutil.copytree(secure.rootfs, copy)
    again = Built(copy, tmp_path / "again")
    assemble.assemble(request(copy, again.out, boot_key=KEYS / "customer.pem"))
    first, _ = _slot_files(secure, "a", tmp_path / "first")
    second, _ = _slot_files(again, "a", tmp_path / "second")
    assert first.read_bytes() == second.read_bytes()
    assert again.disk.read_bytes() == secure.disk.read_bytes()


def test_slot_b_is_slot_a_plus_a_few_patches(secure: Built, tmp_path: Path):
    """The release carries the signed boot partitions: slot B's by the manifest's patches."""
    manifest = release.read_manifest(secure.release)
    sha, patches = manifest.written(ImageName.BOOT, "b")
    assert 0 < len(patches) <= 16
    written = slot_b_boot(secure, tmp_path)
    assert written == _partition_copy(secure, "boot_b", tmp_path / "b.vfat").read_bytes()
    assert hashlib.sha256(written).hexdigest() == sha


def _argv(rootfs: Path, out: Path, *extra: str) -> list[str]:
    return [
        "assemble", "--rootfs", str(rootfs), "--out", str(out), "--version", "1.0",
        "--sizes", "config=4M,boot=16M,system=24M,data=16M", "--hardware", "pi4,pi5", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("missing.pem", "does not exist"),
        ("garbage.pem", "is not a PEM private key"),
        ("truncated.pem", "is not a PEM private key"),
        ("customer.pub.pem", "is a public key"),
        ("ec-p256.pem", "is an EC key (secp256r1); the Raspberry Pi bootloader checks RSA-2048"),
        ("ed25519.pem", "is an Ed25519 key"),
        ("rsa4096.pem", "is RSA-4096; the Raspberry Pi bootloader checks RSA-2048 only"),
        ("encrypted.pem", "is encrypted"),
        (".", "cannot read boot key"),
    ],
)
def test_bad_boot_key(rootfs: Path, tmp_path: Path, capsys, key: str, expected: str):
    out = tmp_path / "out"
    path = KEYS / key if key != "." else KEYS
    _fails_cleanly(capsys, _argv(rootfs, out, "--boot-key", str(path)), out, expected)


def test_boot_partition_too_small_for_boot_img(tmp_path: Path, capsys):
    rootfs = make_rootfs(tmp_path / "bigboot")
    # Fits the partition loose (14 MiB of 16) but not as a 14 MiB boot.img inside it.
    (rootfs / "boot/firmware/firmware.bin").write_bytes(bytes(8 * 2**20))
    out = tmp_path / "out"
    argv = _argv(rootfs, out, "--boot-key", str(KEYS / "customer.pem"))
    _fails_cleanly(capsys, argv, out, "but the boot_a partition has 16 MiB")


def test_boot_img_larger_than_the_bootloader_loads(tmp_path: Path, capsys):
    rootfs = make_rootfs(tmp_path / "hugeboot")
    with (rootfs / "boot/firmware/firmware.bin").open("wb") as handle:
        handle.truncate(120 * 2**20)  # sparse: 120 MiB of files make a 137 MiB boot.img
    out = tmp_path / "out"
    argv = _argv(rootfs, out, "--boot-key", str(KEYS / "customer.pem"))
    argv[argv.index("--sizes") + 1] = "config=4M,boot=256M,system=24M,data=16M"
    _fails_cleanly(capsys, argv, out, "boot.img of boot_a would be 137 MiB; the bootloader loads")


@pytest.mark.parametrize(
    ("remove", "expected"),
    [
        ("vmlinuz", "pi4 lacks vmlinuz"),
        ("initrd.img", "pi4 lacks initrd.img"),
        ("bcm2711-rpi-4-b.dtb", "pi4 lacks bcm2711-rpi-4-b.dtb"),
    ],
)
def test_rootfs_missing_a_boot_file(tmp_path: Path, capsys, remove: str, expected: str):
    rootfs = make_rootfs(tmp_path / "root")
    (rootfs / "boot/firmware" / remove).unlink()
    out = tmp_path / "out"
    argv = _argv(rootfs, out, "--boot-key", str(KEYS / "customer.pem"))
    _fails_cleanly(capsys, argv, out, expected)


def test_config_txt_without_initramfs(tmp_path: Path, capsys):
    rootfs = make_rootfs(tmp_path / "root")
    (rootfs / "boot/firmware/config.txt").write_text("arm_64bit=1\nkernel=vmlinuz\n")
    out = tmp_path / "out"
    argv = _argv(rootfs, out, "--boot-key", str(KEYS / "customer.pem"))
    _fails_cleanly(capsys, argv, out, "names no initramfs; a secure-boot image needs one")


def test_inspect_shows_the_mode_and_checks_boot_sig(secure: Built, built: Built, capsys):
    assert main(["inspect", str(secure.disk), "--boot-pubkey", str(KEYS / "customer.pub.pem")]) == 0
    out = capsys.readouterr().out
    assert "boot mode: secure-boot" in out.splitlines()[2]
    assert out.count("signature: verified against the given key") == 2
    assert out.count("(matches boot.img), ts 1700000000") == 2
    assert "root=PARTLABEL=system_b" in out
    assert "pi4: pi4, pi400, cm4" in out

    # Another key: the report is printed, then one error line, and the exit code says so.
    assert main(["inspect", str(secure.disk), "--boot-pubkey", str(KEYS / "other.pub.pem")]) == 1
    captured = capsys.readouterr()
    assert captured.out.count("signature: FAILS against the given key") == 2
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert errors == [
        f"fleet-image: error: boot_a, boot_b: boot.sig does not verify against "
        f"{KEYS / 'other.pub.pem'}"
    ]

    assert main(["inspect", str(secure.release), "--boot-pubkey", str(KEYS / "other.pub.pem")]) == 1
    captured = capsys.readouterr()
    assert "mode: secure-boot" in captured.out and "signature: FAILS" in captured.out
    assert "boot (slot a): boot.sig does not verify" in captured.err
    assert (
        main(["inspect", str(secure.release), "--boot-pubkey", str(KEYS / "customer.pub.pem")]) == 0
    )
    assert "signature: verified against the given key" in capsys.readouterr().out

    assert main(["inspect", str(secure.disk)]) == 0
    assert "signature: not checked (give --boot-pubkey)" in capsys.readouterr().out

    assert main(["inspect", str(built.disk)]) == 0
    out = capsys.readouterr().out
    assert "boot mode: unsigned (development: anyone with the card can replace the kernel" in out
    assert "boot.sig" not in out
    # An unsigned image asked about a key: no locked board would boot it.
    assert main(["inspect", str(built.disk), "--boot-pubkey", str(KEYS / "customer.pub.pem")]) == 1
    assert "boot_a, boot_b: boot.sig does not verify" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("customer.pem", "not a PEM public key"),
        ("missing.pem", "cannot read boot public key"),
        ("garbage.pem", "not a PEM public key"),
    ],
)
def test_inspect_bad_public_key(secure: Built, capsys, key: str, expected: str):
    assert main(["inspect", str(secure.disk), "--boot-pubkey", str(KEYS / key)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fleet-image: error: ") and expected in err
    assert "Traceback" not in err


def _auto_initramfs_rootfs(root: Path, *, initramfs: bool) -> Path:
    """Raspberry Pi OS's way: no kernel= or initramfs line, auto_initramfs=1, kernel8.img."""
    rootfs = make_rootfs(root)
    firmware = rootfs / "boot/firmware"
    (firmware / "config.txt").write_text("arm_64bit=1\nauto_initramfs=1\n")
    (firmware / "vmlinuz").rename(firmware / "kernel8.img")
    if initramfs:
        (firmware / "initrd.img").rename(firmware / "initramfs8")
    return rootfs


def test_auto_initramfs_as_raspberry_pi_os_writes_it(tmp_path: Path):
    rootfs = _auto_initramfs_rootfs(tmp_path / "root", initramfs=True)
    out = tmp_path / "out"
    assemble.assemble(request(rootfs, out, hardware=None, boot_key=KEYS / "customer.pem"))
    image, _sig = _slot_files(Built(rootfs, out), "a", tmp_path / "a")
    assert {"kernel8.img", "initramfs8"} <= set(_names(image))


def test_auto_initramfs_without_the_file(tmp_path: Path, capsys):
    rootfs = _auto_initramfs_rootfs(tmp_path / "root", initramfs=False)
    out = tmp_path / "out"
    argv = _argv(rootfs, out, "--boot-key", str(KEYS / "customer.pem"))
    _fails_cleanly(capsys, argv, out, "lacks the initramfs initramfs8 config.txt names")


def test_boot_sig_timestamp_is_source_date_epoch(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1234567890")
    rootfs = make_rootfs(tmp_path / "root")  # assemble stamps the version into it
    out = tmp_path / "out"
    assert main(_argv(rootfs, out, "--boot-key", str(KEYS / "customer.pem"))) == 0
    _image, sig = _slot_files(Built(rootfs, out), "b", tmp_path / "b")
    assert bootsig.parse(sig.read_bytes()).ts == 1234567890


# The boot keys the image's updater trusts (fleetcore.bootsig.TRUST_DIR, updater/bootkeys.py).

CUSTOMER_FP = "350757c164aa8d46b03f8792423f462f4b5a1f9f0cbc5250aacbe5bfb1d61042"
OTHER_FP = "eadd8dbdeb5babe14fec1f8849550f6feb855cdaa13417059c1b3da639036ca7"


def test_inspect_lists_the_keys_the_updater_trusts(secure: Built, built: Built, capsys):
    assert main(["inspect", str(secure.disk)]) == 0
    assert f"trusted boot keys: {CUSTOMER_FP}\n" in capsys.readouterr().out
    assert main(["inspect", str(built.disk)]) == 0
    assert "trusted boot keys: none (its updater leaves boot signatures" in capsys.readouterr().out


@pytest.mark.parametrize("system", ["squashfs", "erofs"])
def test_boot_trust_adds_a_rollover_key(tmp_path: Path, capsys, system: str):
    """--boot-trust lists another key beside the signing key's; the updater reads the list the
    builder wrote; an unsigned build of the same rootfs removes it again."""
    rootfs = make_rootfs(tmp_path / "rootfs")
    out = tmp_path / "out"
    argv = _argv(rootfs, out, "--boot-key", str(KEYS / "customer.pem"), "--system", system)
    assert main([*argv, "--boot-trust", str(KEYS / "other.pub.pem")]) == 0
    capsys.readouterr()
    trust = bootkeys.load(rootfs / bootsig.TRUST_DIR)
    assert trust is not None and sorted(trust.keys) == [CUSTOMER_FP, OTHER_FP]
    assert main(["inspect", str(out / "disk.img")]) == 0
    assert f"trusted boot keys: {CUSTOMER_FP}, {OTHER_FP}\n" in capsys.readouterr().out

    # The signing key named again is listed once.
    again = tmp_path / "again"
    argv = _argv(rootfs, again, "--boot-key", str(KEYS / "customer.pem"), "--system", system)
    assert main([*argv, "--boot-trust", str(KEYS / "customer.pub.pem")]) == 0
    assert sorted(p.name for p in (rootfs / bootsig.TRUST_DIR).iterdir()) == [f"{CUSTOMER_FP}.pem"]

    assert main(_argv(rootfs, tmp_path / "unsigned", "--system", system)) == 0
    assert not (rootfs / bootsig.TRUST_DIR).exists()
    assert (rootfs / "usr/share/metrica-fleet/hostname").exists()


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("missing.pem", "trusted boot key"),
        ("customer.pem", "is a private key"),
        ("garbage.pem", "not a PEM public key"),
        ("rsa4096.pem", "is a private key"),
        (".", "cannot read trusted boot key"),
    ],
)
def test_bad_boot_trust(rootfs: Path, tmp_path: Path, capsys, key: str, expected: str):
    out = tmp_path / "out"
    path = KEYS / key if key != "." else KEYS
    argv = _argv(rootfs, out, "--boot-key", str(KEYS / "customer.pem"), "--boot-trust", str(path))
    _fails_cleanly(capsys, argv, out, expected)


def test_boot_trust_of_another_size(tmp_path: Path, capsys):
    rootfs = make_rootfs(tmp_path / "rootfs")
    pub = tmp_path / "rsa4096.pub.pem"
    private = serialization.load_pem_private_key((KEYS / "rsa4096.pem").read_bytes(), None)
    pub.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    out = tmp_path / "out"
    argv = _argv(rootfs, out, "--boot-key", str(KEYS / "customer.pem"), "--boot-trust", str(pub))
    _fails_cleanly(capsys, argv, out, "checks RSA-2048 keys only, not RSA-4096")


def test_boot_trust_needs_a_boot_key(rootfs: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    argv = _argv(rootfs, out, "--boot-trust", str(KEYS / "other.pub.pem"))
    _fails_cleanly(capsys, argv, out, "--boot-trust needs --boot-key")
