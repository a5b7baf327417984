"""The updater's check of a new slot's boot.sig against the boot keys the running image trusts
(updater/bootkeys.py): the trust list read as hostile input, checked-in signatures
(fixtures/boot-sigs), the read-back on real FAT partitions, and the engine refusing a trial."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from fleetcore import bootsig
from fleetcore.bootsig import BootSigError
from simulator.releases import build_release
from tests.updater.test_first_update_seeded import V1, V2, v1_device_and_repo
from tests.updater.test_secure_boot_install import KEYS
from tests.updater.test_verity import _reader, assert_trial_or_refused, fat_image
from updater.bootimage import BootImageRefused, read_back_check
from updater.bootkeys import BootKeysError, BootTrust, UntrustedBootImage, load
from updater.cli import open_device
from updater.engine import EngineResult
from updater.paths import Roots
from updater.sources import DIRECTORY_SCHEME

SIGS = Path(__file__).parent / "fixtures" / "boot-sigs"
BOOT_IMG = (SIGS / "boot.img").read_bytes()
DIGEST = hashlib.sha256(BOOT_IMG).digest()
CUSTOMER_FP = "350757c164aa8d46b03f8792423f462f4b5a1f9f0cbc5250aacbe5bfb1d61042"
OTHER_FP = "eadd8dbdeb5babe14fec1f8849550f6feb855cdaa13417059c1b3da639036ca7"


def trust_dir(root: Path, *names: str) -> Path:
    """``root``'s trust list holding the named public keys, as the image builder writes it."""
    folder = root / bootsig.TRUST_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        key = bootsig.load_public_key((KEYS / name).read_bytes())
        file_name, pem = bootsig.trust_file(key)
        (folder / file_name).write_bytes(pem)
    return folder


def _sig(name: str) -> bootsig.BootSig:
    return bootsig.parse((SIGS / name).read_bytes())


def test_fingerprints_are_openssls():
    """The fixture README's fingerprints are openssl's (DER SubjectPublicKeyInfo, SHA-256)."""
    readme = (SIGS / "README.md").read_text()
    for name, expected in (("customer.pub.pem", CUSTOMER_FP), ("other.pub.pem", OTHER_FP)):
        assert bootsig.fingerprint(bootsig.load_public_key((KEYS / name).read_bytes())) == expected
        assert expected in readme


def test_no_trust_list_is_none(tmp_path: Path):
    assert load(tmp_path / bootsig.TRUST_DIR) is None


def test_the_list_loads_by_fingerprint(tmp_path: Path):
    trust = load(trust_dir(tmp_path, "customer.pub.pem", "other.pub.pem"))
    assert trust is not None and sorted(trust.keys) == sorted([CUSTOMER_FP, OTHER_FP])


@pytest.mark.parametrize(
    ("sig", "trusted", "signed_by"),
    [
        ("customer.sig", ["customer.pub.pem"], CUSTOMER_FP),
        ("other.sig", ["customer.pub.pem", "other.pub.pem"], OTHER_FP),
        ("customer.sig", ["other.pub.pem", "customer.pub.pem"], CUSTOMER_FP),
    ],
)
def test_a_trusted_signature_names_its_key(tmp_path: Path, sig, trusted, signed_by):
    trust = load(trust_dir(tmp_path, *trusted))
    assert trust is not None
    assert trust.check("boot_b", _sig(sig), DIGEST) == signed_by


@pytest.mark.parametrize(
    ("sig", "refused"),
    [
        (
            "other.sig",
            "boot_b: boot.sig is not signed by a key this device trusts (trusted: 350757",
        ),
        ("corrupted.sig", "not signed by a key this device trusts"),
        ("digest-only.sig", "boot_b: boot.sig carries no rsa2048 signature"),
    ],
)
def test_an_untrusted_signature_is_refused(tmp_path: Path, sig, refused):
    trust = load(trust_dir(tmp_path, "customer.pub.pem"))
    assert trust is not None
    with pytest.raises(UntrustedBootImage) as caught:
        trust.check("boot_b", _sig(sig), DIGEST)
    assert refused in str(caught.value) and "\n" not in str(caught.value)


def test_a_truncated_sig_is_not_a_boot_sig():
    with pytest.raises(BootSigError, match="line 3 is not 'rsa2048"):
        _sig("truncated.sig")


def test_a_signature_over_another_image_is_refused(tmp_path: Path):
    trust = load(trust_dir(tmp_path, "customer.pub.pem"))
    assert trust is not None
    with pytest.raises(UntrustedBootImage, match="boot_b: boot.sig names sha256"):
        trust.check("boot_b", _sig("customer.sig"), hashlib.sha256(b"another").digest())


def _pem(name: str) -> bytes:
    return (KEYS / name).read_bytes()


def _write(folder: Path, name: str, data: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


@pytest.mark.parametrize(
    ("make", "refused"),
    [
        (lambda f: f.mkdir(parents=True), "lists no boot keys"),
        (lambda f: _write(f, "customer.pem", _pem("customer.pub.pem")), "named <sha256"),
        (lambda f: _write(f, f"{CUSTOMER_FP}.PEM", _pem("customer.pub.pem")), "named <sha256"),
        (lambda f: _write(f, f"{OTHER_FP}.pem", _pem("customer.pub.pem")), "not the one its name"),
        (lambda f: _write(f, f"{CUSTOMER_FP}.pem", b"garbage\n"), "not a PEM public key"),
        (lambda f: _write(f, f"{CUSTOMER_FP}.pem", b""), "not a PEM public key"),
        (lambda f: _write(f, f"{CUSTOMER_FP}.pem", _pem("customer.pem")), "holds a private key"),
        (lambda f: _write(f, f"{CUSTOMER_FP}.pem", _pem("truncated.pem")), "a private key"),
        (lambda f: _write(f, f"{CUSTOMER_FP}.pem", _rsa4096_pub()), "not RSA-4096"),
        (lambda f: _write(f, f"{CUSTOMER_FP}.pem", b"x" * 5000), "larger than 4096 bytes"),
        (lambda f: _symlinked_key(f), "is a symlink, not a boot key"),
        (lambda f: _fifo_key(f), "is not a regular file"),
        (lambda f: _subfolder_key(f), "is not a regular file"),
        (lambda f: _write(f.parent, f.name, b"a file"), "is not a folder of boot keys"),
        (lambda f: _symlinked_folder(f), "is not a folder of boot keys"),
    ],
    ids=[
        "empty",
        "not-a-fingerprint",
        "upper-case",
        "name-of-another-key",
        "garbage",
        "empty-file",
        "private-key",
        "truncated-private-key",
        "rsa4096",
        "too-large",
        "symlink",
        "fifo",
        "folder",
        "list-is-a-file",
        "list-is-a-symlink",
    ],
)
def test_a_bad_trust_list_refuses_every_install(tmp_path: Path, make, refused):
    folder = tmp_path / bootsig.TRUST_DIR
    make(folder)
    with pytest.raises(BootKeysError) as caught:
        load(folder)
    assert refused in str(caught.value) and "\n" not in str(caught.value)


def _rsa4096_pub() -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(_pem("rsa4096.pem"), password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _symlinked_key(folder: Path) -> None:
    outside = folder.parent / "elsewhere.pem"
    _write(folder.parent, outside.name, _pem("customer.pub.pem"))
    folder.mkdir(parents=True)
    (folder / f"{CUSTOMER_FP}.pem").symlink_to(outside)


def _fifo_key(folder: Path) -> None:
    folder.mkdir(parents=True)
    os.mkfifo(folder / f"{CUSTOMER_FP}.pem")


def _subfolder_key(folder: Path) -> None:
    (folder / f"{CUSTOMER_FP}.pem").mkdir(parents=True)


def _symlinked_folder(folder: Path) -> None:
    real = trust_dir(folder.parent / "real", "customer.pub.pem")
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.symlink_to(real)


# The read-back of a boot partition on real FAT images (mkfs.vfat + mcopy).


def _read_back(data: bytes, trust: BootTrust | None):
    check = read_back_check(_reader(data), "boot_b", signed_size=len(data), trust=trust)
    if check is None:
        return None
    for pos in range(0, len(data), 65536):
        check.update(pos, data[pos : pos + 65536])
    check.finish()
    return check


def _customer_trust() -> BootTrust:
    key = bootsig.load_public_key(_pem("customer.pub.pem"))
    return BootTrust({bootsig.fingerprint(key): key})


@pytest.mark.parametrize("sig", ["customer.sig", "other.sig"])
def test_the_read_back_checks_the_signature(tmp_path: Path, sig):
    partition = fat_image(tmp_path, {"boot.img": BOOT_IMG, "boot.sig": (SIGS / sig).read_bytes()})
    if sig == "customer.sig":
        check = _read_back(partition, _customer_trust())
        assert check is not None and check.signed_by == CUSTOMER_FP
        unchecked = _read_back(partition, None)
        assert unchecked is not None and unchecked.signed_by is None
        return
    with pytest.raises(UntrustedBootImage, match="not signed by a key this device trusts"):
        _read_back(partition, _customer_trust())
    assert _read_back(partition, None) is not None  # the digest matches: left to the bootloader


@pytest.mark.parametrize("kind", ["loose-files", "not-fat"])
def test_a_device_that_trusts_keys_refuses_an_unsigned_slot(tmp_path: Path, kind):
    if kind == "loose-files":
        partition = fat_image(tmp_path, {"kernel8.img": b"k" * 4096, "cmdline.txt": b"root=x\n"})
    else:
        partition = bytes(1 << 20)
    with pytest.raises(BootImageRefused, match="boot_b holds no signed boot image"):
        _read_back(partition, _customer_trust())
    assert _read_back(partition, None) is None


# The engine: a release signed by a key the running image does not trust is never tried.


@pytest.mark.parametrize("signer", ["customer", "other"])
def test_engine_tries_only_a_release_signed_by_a_trusted_key(tmp_path: Path, signer):
    builds = {
        V1: build_release(tmp_path, V1, boot_key=KEYS / "customer.pem"),
        V2: build_release(tmp_path, V2, boot_key=KEYS / f"{signer}.pem"),
    }
    device, repo, _ = v1_device_and_repo(tmp_path, builds)
    device.power_on()
    trust_dir(device.roots.root, "customer.pub.pem")
    engine = open_device(device.roots).engine
    result = engine.start(V2, f"{DIRECTORY_SCHEME}{repo}")
    refused = None if signer == "customer" else "boot.sig is not signed by a key this device trusts"
    assert_trial_or_refused(engine, result, refused)
    if refused is not None:
        assert result is EngineResult.IDLE


def test_engine_refuses_every_install_while_the_trust_list_is_unreadable(tmp_path: Path):
    builds = {v: build_release(tmp_path, v, boot_key=KEYS / "customer.pem") for v in (V1, V2)}
    device, repo, _ = v1_device_and_repo(tmp_path, builds)
    device.power_on()
    folder = trust_dir(device.roots.root, "customer.pub.pem")
    shutil.copy(KEYS / "customer.pub.pem", folder / "customer.pub.pem")
    engine = open_device(device.roots).engine
    result = engine.start(V2, f"{DIRECTORY_SCHEME}{repo}")
    assert_trial_or_refused(engine, result, "a boot key's file is named <sha256 fingerprint>.pem")


def test_roots_place_the_list_in_the_running_image(tmp_path: Path):
    assert Roots(root=tmp_path).boot_keys_dir == tmp_path / "usr/share/metrica-fleet/boot-keys"
