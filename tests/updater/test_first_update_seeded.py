"""The first OS update of a freshly flashed card is seeded from the card itself.

The system image cannot carry its own chunk index, so ``fleet-image assemble`` puts slot A's
indexes on the data partition where the updater keeps each slot's (``Roots.slot_dir``). Here
a device's /data is exactly what the assembled v1 disk's data partition holds (copied out
with debugfs, nothing mounted), and the install of v2 must take most chunks from slot A.
"""

import shutil
from pathlib import Path

from fleetcore.layout import Slot
from fleetcore.release import SLOT_INDEX_DIR, Manifest
from fleetcore.run import run
from fleetcore.version import Version
from image import disk as image_disk
from image.layout import SECTOR
from signing.keys import KeyStore
from signing.repository import init_repository
from simulator.device import SimulatedDevice
from simulator.releases import build_release, publish
from updater.cli import open_device
from updater.engine import EngineResult
from updater.sources import DIRECTORY_SCHEME

V1, V2 = Version("1.0.0"), Version("2.0.0")


def _data_partition(disk: Path, dest: Path) -> None:
    """Copy the data partition's files into ``dest`` with debugfs (no mount)."""
    table = image_disk.read_table(disk)
    (part,) = [p for p in table["partitions"] if p["name"] == "data"]
    image = dest.parent / "data.ext4"
    with disk.open("rb") as src:
        src.seek(part["start"] * SECTOR)
        image.write_bytes(src.read(part["size"] * SECTOR))
    top = SLOT_INDEX_DIR.split("/")[0]
    dumped = dest.parent / "dumped"
    dumped.mkdir()
    run(["debugfs", "-R", f"rdump /{top} {dumped}", image])
    shutil.copytree(dumped, dest, dirs_exist_ok=True)


def v1_device_and_repo(
    tmp_path: Path, builds: dict[Version, Path]
) -> tuple[SimulatedDevice, Path, dict[Version, Manifest]]:
    """Every build published to a fresh repository, and a device provisioned with V1 that
    talks to no Overlord (the tests drive its engine from a directory source)."""
    keys = KeyStore.generate(tmp_path / "keys")
    repo = tmp_path / "repo"
    init_repository(repo, keys)
    manifests = {version: publish(repo, keys, build) for version, build in builds.items()}
    device = SimulatedDevice("first", tmp_path / "device")
    device.provision(
        build=builds[V1],
        version=str(V1),
        root_json=(repo / "metadata" / "1.root.json").read_bytes(),
        overlord_url="http://127.0.0.1:9",
        enrollment_token="unused",
    )
    return device, repo, manifests


def test_first_update_is_seeded_from_the_data_partition(tmp_path: Path):
    builds = {v: build_release(tmp_path, v) for v in (V1, V2)}
    device, repo, _ = v1_device_and_repo(tmp_path, builds)
    roots = device.roots
    # Only what a real card holds: slot A's indexes come from the data partition.
    shutil.rmtree(roots.slot_dir(Slot.A))
    _data_partition(device.disk, roots.data)
    assert sorted(p.name for p in roots.slot_dir(Slot.A).iterdir()) == [
        "boot.index.json",
        "system.index.json",
    ]

    device.power_on()
    engine = open_device(roots).engine
    assert engine.start(V2, f"{DIRECTORY_SCHEME}{repo}") is EngineResult.REBOOTING
    stats = engine.last_stats
    # Local chunks: from slot A (the seed), or repeats of one already in slot B (copied).
    local = stats["seeded_chunks"] + stats["present_chunks"] + stats["copied_chunks"]
    assert stats["fetched_chunks"] > 0  # v2 changed a package and the kernel
    assert stats["seeded_chunks"] > 0, stats
    assert local > 2 * stats["fetched_chunks"], stats
