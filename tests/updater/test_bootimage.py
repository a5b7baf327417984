"""The updater's pre-trial check of a secure-boot slot: boot.img against boot.sig's digest,
on FAT images made by the real mkfs.vfat and mcopy."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fleetcore.bootsig import BootSig, BootSigError
from fleetcore.release import ImageName
from fleetcore.wire import UpdateState
from tests.updater.releases import image_bytes
from tests.updater.test_verity import (
    _reader,
    assert_trial_or_refused,
    fat_image,
    install_v3,
)
from updater.bootimage import check_files

BOOT_IMG = image_bytes(3, 200_000)


def _sig(image: bytes) -> bytes:
    return BootSig(hashlib.sha256(image).hexdigest(), 1_700_000_000, None).render()


def test_matching_boot_img_passes(tmp_path: Path):
    data = fat_image(tmp_path, {"boot.img": BOOT_IMG, "boot.sig": _sig(BOOT_IMG)})
    assert check_files(_reader(data), len(data)) == hashlib.sha256(BOOT_IMG).hexdigest()


def test_unsigned_slot_has_nothing_to_check(tmp_path: Path):
    data = fat_image(tmp_path, {"cmdline.txt": b"quiet\n"})
    assert check_files(_reader(data), len(data)) is None


def test_flipped_byte_in_boot_img_is_refused(tmp_path: Path):
    flipped = bytearray(BOOT_IMG)
    flipped[1234] ^= 0x01
    data = fat_image(tmp_path, {"boot.img": bytes(flipped), "boot.sig": _sig(BOOT_IMG)})
    with pytest.raises(BootSigError, match="boot.sig names sha256"):
        check_files(_reader(data), len(data))


def test_boot_sig_without_boot_img_is_refused(tmp_path: Path):
    data = fat_image(tmp_path, {"boot.sig": _sig(BOOT_IMG)})
    with pytest.raises(BootSigError, match="boot.img is not"):
        check_files(_reader(data), len(data))


@pytest.mark.parametrize("sig_for", ["same", "other"])
def test_engine_refuses_a_trial_whose_boot_img_does_not_match(
    device, repo_template, tmp_path, sig_for
):
    """A signed release whose boot.sig names another boot.img (a build gone wrong): read-back
    passes, the boot.sig check does not, no trial is asked."""
    # The ramdisk is a FAT image (the updater also reads its cmdline.txt for a verity root).
    ramdisk = fat_image(tmp_path, {"cmdline.txt": b"quiet\n"}, size=256 << 10)
    named = ramdisk if sig_for == "same" else image_bytes(4, 1000)
    boot = fat_image(tmp_path, {"boot.img": ramdisk, "boot.sig": _sig(named)})
    images = {ImageName.BOOT: boot, ImageName.SYSTEM: image_bytes(3, 1 << 20)}
    refused = None if sig_for == "same" else "boot_b: boot.sig names sha256"
    engine, result = install_v3(device, repo_template, tmp_path, images)
    assert_trial_or_refused(engine, result, refused)


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
