"""The updater's pre-trial check of a secure-boot slot: boot.img against boot.sig's digest,
hashed as the read-back streams the boot partition past (or read again when its clusters are
out of order), on FAT images made by the real mkfs.vfat and mcopy and by the image builder."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from fleetcore.bootsig import BootSig
from fleetcore.layout import Slot
from fleetcore.release import ImageName, load_manifest
from fleetcore.version import Version
from fleetcore.wire import UpdateState
from simulator.releases import build_release
from tests.updater import fatedit
from tests.updater.releases import image_bytes
from tests.updater.test_secure_boot_install import KEYS, _fat_file
from tests.updater.test_verity import (
    _reader,
    assert_trial_or_refused,
    fat_image,
    install_v3,
)
from updater import disk as updater_disk
from updater.bootimage import BootImageRefused, read_back_check
from updater.disk import BootDisk, PartitionIO
from updater.fatextents import locate
from updater.install import verify_slot

BOOT_IMG = image_bytes(3, 200_000)
FIXTURES = Path(__file__).parent / "fixtures" / "boot-partitions"
CASES = json.loads((FIXTURES / "cases.json").read_text())
V1 = Version("1.0.0")


def _sig(image: bytes) -> bytes:
    return BootSig(hashlib.sha256(image).hexdigest(), 1_700_000_000, None).render()


def read_back(data: bytes, *, piece: int = 4097, signed_size: int | None = None):
    """Stream ``data`` past the check as the read-back does (pieces not aligned to clusters);
    (boot.img's digest, whether it was hashed in the stream), or None without boot.sig."""
    size = len(data) if signed_size is None else signed_size
    check = read_back_check(_reader(data), "boot_b", signed_size=size)
    if check is None:
        return None
    for pos in range(0, size, piece):
        check.update(pos, data[pos : min(pos + piece, size)])
    return check.finish(), check.fused


def _signed_slot(tmp: Path) -> bytearray:
    return bytearray(fat_image(tmp, {"boot.sig": _sig(BOOT_IMG), "boot.img": BOOT_IMG}))


@pytest.mark.parametrize("name", sorted(CASES))
def test_checked_in_boot_partitions(name: str):
    """The known-good and known-bad boot partitions (fixtures/boot-partitions/make.py): the
    digest and whether it was taken in the read-back, or the one error line."""
    data = gzip.decompress((FIXTURES / f"{name}.img.gz").read_bytes())
    expected = CASES[name]
    if "error" in expected:
        with pytest.raises(BootImageRefused, match=f"^boot_b: .*{expected['error']}"):
            read_back(data)
    else:
        assert read_back(data) == (expected["sha256"], expected["fused"])


@pytest.mark.parametrize("piece", [512, 4097, 1 << 20])
def test_matching_boot_img_is_hashed_in_the_read_back(tmp_path: Path, piece: int):
    data = bytes(_signed_slot(tmp_path))
    assert read_back(data, piece=piece) == (hashlib.sha256(BOOT_IMG).hexdigest(), True)


def test_unsigned_slot_has_nothing_to_check(tmp_path: Path):
    assert read_back(fat_image(tmp_path, {"cmdline.txt": b"quiet\n"})) is None
    assert read_back(image_bytes(1, 1 << 16)) is None  # not FAT at all: nothing to check


@pytest.mark.parametrize("order", ["contiguous", "gapped", "swapped"])
def test_flipped_byte_in_boot_img_is_refused_whatever_the_layout(tmp_path: Path, order: str):
    slot = _signed_slot(tmp_path)
    fatedit.reorder(slot, "boot.img", order)
    assert read_back(bytes(slot)) == (hashlib.sha256(BOOT_IMG).hexdigest(), order != "swapped")
    found = locate(_reader(bytes(slot)), "boot.img", limit=len(slot))
    assert found is not None
    slot[found.extents[-1].start + 1234] ^= 0x01  # inside boot.img, in its second half
    with pytest.raises(BootImageRefused, match="boot_b: boot.sig names sha256"):
        read_back(bytes(slot))


def test_boot_sig_without_boot_img_is_refused(tmp_path: Path):
    data = fat_image(tmp_path, {"boot.sig": _sig(BOOT_IMG)})
    with pytest.raises(BootImageRefused, match="boot_b: boot.sig is present but boot.img is not"):
        read_back(data)


def test_malformed_boot_sig_is_refused(tmp_path: Path):
    data = fat_image(tmp_path, {"boot.sig": b"not a signature\n", "boot.img": BOOT_IMG})
    with pytest.raises(BootImageRefused, match="boot_b: boot.sig does not start with"):
        read_back(data)


def test_boot_img_past_the_signed_size_is_refused(tmp_path: Path):
    """The read-back covers the signed image's bytes only; boot.img's bytes past them would
    be bytes nobody signed in the release, whatever boot.sig says."""
    data = bytes(_signed_slot(tmp_path))
    found = locate(_reader(data), "boot.img", limit=len(data))
    assert found is not None
    assert read_back(data, signed_size=found.end) is not None
    with pytest.raises(BootImageRefused, match=r"boot_b: boot.img ends at byte \d+, past the"):
        read_back(data, signed_size=found.end - 1)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("loop", "exceeds 200000 bytes"),
        ("past the filesystem", "leaves the filesystem"),
        ("short", "boot.img's FAT cluster chain holds .* short of its 200000"),
        ("long", "exceeds 200000 bytes"),
    ],
)
def test_hostile_chains_are_one_clear_error(tmp_path: Path, damage: str, message: str):
    slot = _signed_slot(tmp_path)
    fatedit.rewire(slot, "boot.img", damage)
    with pytest.raises(BootImageRefused, match=f"boot_b: .*{message}"):
        read_back(bytes(slot))


def test_builder_boot_partition_is_hashed_once(tmp_path: Path, monkeypatch):
    """A boot partition as ``fleet-image assemble --boot-key`` writes it: the digest taken in
    the read-back is hashlib's over boot.img, and the whole pre-trial check reads boot.img's
    bytes once (plus the few KiB of its own FAT that hold cmdline.txt)."""
    out = build_release(tmp_path, V1, boot_key=KEYS / "customer.pem")
    disk = BootDisk.open(out / "disk.img")
    manifest = load_manifest((out / "release" / "manifest.json").read_bytes())
    boot_img = _fat_file(out / "disk.img", "boot_a", "boot.img")
    boot = disk.slot_partition("boot", Slot.A)
    with PartitionIO(boot, writable=False) as reader:
        found = locate(reader.read, "boot.img", limit=boot.size)
    assert found is not None and found.size == len(boot_img)

    reads: list[tuple[str, int, int]] = []
    real_read = updater_disk.PartitionIO.read

    def counted(self: PartitionIO, pos: int, length: int) -> bytes:
        reads.append((self.partition.label, pos, length))
        return real_read(self, pos, length)

    monkeypatch.setattr(updater_disk.PartitionIO, "read", counted)
    checks = verify_slot(disk, Slot.A, manifest, None)
    assert checks.boot_img_sha256 == hashlib.sha256(boot_img).hexdigest()
    assert checks.boot_img_fused and checks.verity_root is not None
    of_boot_img = sum(
        max(0, min(pos + length, e.end) - max(pos, e.start))
        for label, pos, length in reads
        if label == "boot_a"
        for e in found.extents
    )
    assert len(boot_img) <= of_boot_img < len(boot_img) + (256 << 10)


@pytest.mark.parametrize("order", ["contiguous", "swapped"])
@pytest.mark.parametrize("sig_for", ["same", "other"])
def test_engine_refuses_a_trial_whose_boot_img_does_not_match(
    device, repo_template, tmp_path, sig_for, order
):
    """A signed release whose boot.sig names another boot.img (a build gone wrong): read-back
    passes, the boot.sig check does not, no trial is asked; the same when boot.img's clusters
    are out of order on the card and it is hashed in a read of its own."""
    # The ramdisk is a FAT image (the updater also reads its cmdline.txt for a verity root).
    ramdisk = fat_image(tmp_path, {"cmdline.txt": b"quiet\n"}, size=256 << 10)
    named = ramdisk if sig_for == "same" else image_bytes(4, 1000)
    slot = bytearray(fat_image(tmp_path, {"boot.img": ramdisk, "boot.sig": _sig(named)}))
    fatedit.reorder(slot, "boot.img", order)
    boot = bytes(slot)
    images = {ImageName.BOOT: boot, ImageName.SYSTEM: image_bytes(3, 1 << 20)}
    refused = None if sig_for == "same" else "boot_b: boot.sig names sha256"
    engine, result = install_v3(device, repo_template, tmp_path, images)
    assert_trial_or_refused(engine, result, refused)


def test_engine_fails_the_install_on_a_hostile_chain(device, repo_template, tmp_path):
    """A boot partition whose boot.img chain loops: one install-failed line, no trial."""
    ramdisk = fat_image(tmp_path, {"cmdline.txt": b"quiet\n"}, size=256 << 10)
    slot = bytearray(fat_image(tmp_path, {"boot.img": ramdisk, "boot.sig": _sig(ramdisk)}))
    fatedit.rewire(slot, "boot.img", "loop")
    images = {ImageName.BOOT: bytes(slot), ImageName.SYSTEM: image_bytes(3, 1 << 20)}
    engine, result = install_v3(device, repo_template, tmp_path, images)
    assert_trial_or_refused(engine, result, "boot_b: FAT cluster chain leaves the filesystem")


@pytest.mark.parametrize("signed", [True, False])
def test_a_trial_that_never_started_names_the_bootloader_on_a_secure_slot(
    device, repo_template, tmp_path, signed
):
    """The bootloader refuses a boot.img signed by another key before anything runs, and the
    OS learns only that the trial did not start: on a slot with a boot.sig the rollback's
    reason names that refusal among the causes (issue 17's scenario 4 in the QEMU story)."""
    ramdisk = fat_image(tmp_path, {"cmdline.txt": b"quiet\n"}, size=256 << 10)
    files = {"boot.img": ramdisk, "boot.sig": _sig(ramdisk)} if signed else {"x": b"x"}
    images = {ImageName.BOOT: fat_image(tmp_path, files), ImageName.SYSTEM: image_bytes(3, 1 << 20)}
    engine, result = install_v3(device, repo_template, tmp_path, images)
    assert_trial_or_refused(engine, result, None)
    device.power_on(requested_reboot=False)  # the trial was refused: the committed slot boots
    device.settle()
    state = device.engine().store.load()
    assert state.state is UpdateState.ROLLED_BACK
    assert state.last_failure is not None
    assert "did not start or ended early" in state.last_failure
    assert ("bootloader refused the slot's signed boot.img" in state.last_failure) is signed
