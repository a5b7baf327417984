"""A secure-boot release installs through the unchanged updater: the boot partition is one
image, so slot B receives its own signed boot.img and boot.sig (ADR 0070)."""

import hashlib
import subprocess
from pathlib import Path

from fleetcore import bootsig
from fleetcore.release import ImageName
from image import disk as image_disk
from image.layout import SECTOR
from simulator.releases import build_release
from tests.updater.test_first_update_seeded import V1, V2, v1_device_and_repo
from updater.cli import open_device
from updater.engine import EngineResult
from updater.sources import DIRECTORY_SCHEME

KEYS = Path(__file__).parents[1] / "image" / "fixtures" / "bootkeys"
MTOOLS = {"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}


def _fat_file(disk: Path, label: str, name: str) -> bytes:
    (part,) = [p for p in image_disk.read_table(disk)["partitions"] if p["name"] == label]
    drive = f"{disk}@@{part['start'] * SECTOR}"
    argv = ["mcopy", "-n", "-i", drive, f"::/{name}", "-"]
    return subprocess.run(argv, capture_output=True, check=True, env=MTOOLS).stdout


def test_slot_b_gets_its_own_signed_boot_img(tmp_path: Path):
    builds = {v: build_release(tmp_path, v, boot_key=KEYS / "customer.pem") for v in (V1, V2)}
    device, repo, manifests = v1_device_and_repo(tmp_path, builds)
    manifest = manifests[V2]
    device.power_on()

    engine = open_device(device.roots).engine
    assert engine.start(V2, f"{DIRECTORY_SCHEME}{repo}") is EngineResult.REBOOTING

    key = bootsig.load_public_key((KEYS / "customer.pub.pem").read_bytes())
    for label, system in [("boot_a", "system_a"), ("boot_b", "system_b")]:
        image = _fat_file(device.disk, label, "boot.img")
        sig = bootsig.parse(_fat_file(device.disk, label, "boot.sig"))
        bootsig.verify(sig, hashlib.sha256(image).digest(), key)
        inner = tmp_path / f"{label}.img"
        inner.write_bytes(image)
        argv = ["mtype", "-i", str(inner), "::/cmdline.txt"]
        cmdline = subprocess.run(argv, capture_output=True, check=True, env=MTOOLS).stdout
        assert f"root=PARTLABEL={system}".encode() in cmdline
    # Slot B holds v2's signed partition exactly: slot A's image plus the manifest's patches.
    written_sha, patches = manifest.written(ImageName.BOOT, "b")
    assert patches
    (part,) = [p for p in image_disk.read_table(device.disk)["partitions"] if p["name"] == "boot_b"]
    with device.disk.open("rb") as handle:
        handle.seek(part["start"] * SECTOR)
        boot_b = handle.read(manifest.images[ImageName.BOOT].size)
    assert hashlib.sha256(boot_b).hexdigest() == written_sha
    v1_boot_a = _fat_file(builds[V1] / "disk.img", "boot_a", "boot.img")
    assert _fat_file(device.disk, "boot_a", "boot.img") == v1_boot_a
    assert _fat_file(device.disk, "boot_b", "boot.img") != v1_boot_a
