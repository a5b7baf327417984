"""An install on real partition nodes, found the way a Pi finds them.

A ``fleet-image assemble`` disk goes on a loop device with its partitions scanned
(/dev/loopNp1..p6). Its system_a is mounted read-only as the device's root, as on a booted
card; the config partition's files are copied out with mtools (test kernels may lack
vfat). The updater is not told the disk: it finds it from the mounted root's device (sysfs),
opens slots by PARTLABEL as partition nodes, installs 2.0.0 into slot b, reads it back, boots
it (system_b mounted as the new root) and commits. The physical write guard and the udev
by-partlabel lookup are checked on the same nodes.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from fleetcore.layout import Slot
from fleetcore.release import ImageName
from fleetcore.run import run, run_text
from fleetcore.version import Version
from fleetcore.wire import UpdateState
from image import assemble
from signing.repository import publish_release
from tests.image.conftest import make_rootfs, request
from tests.updater.releases import ReleaseRepo
from tests.updater.servers import FleetServer
from updater import autoboot
from updater.config import load_config
from updater.disk import find_boot_disk
from updater.engine import Engine, EngineResult
from updater.errors import ActiveSlotError
from updater.firmware import open_firmware
from updater.firmware.simulated import firmware_boot
from updater.health import HealthChecker
from updater.paths import Roots
from updater.queue import EventQueue

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def loop_device(image: Path) -> Iterator[Path]:
    """``image`` on a loop device with a node per partition; detached whatever happens."""
    loop = Path(run_text(["losetup", "--find", "--show", "--partscan", str(image)]).strip())
    try:
        if not Path(f"{loop}p1").exists():  # containers may ignore --partscan; partx does it
            run(["partx", "--add", str(loop)])
        deadline = time.monotonic() + 10
        while not Path(f"{loop}p6").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        yield loop
    finally:
        run(["partx", "--delete", str(loop)], check=False)
        run(["losetup", "--detach", str(loop)], check=False)


@contextlib.contextmanager
def mounted(node: Path, where: Path, *options: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    run(["mount", *options, str(node), str(where)])
    try:
        yield where
    finally:
        run(["umount", str(where)], check=False)


def build(tmp: Path, repo: ReleaseRepo, version: str, extra_bytes: int) -> Path:
    """Assemble ``version`` from a small Pi-OS-shaped rootfs that trusts ``repo``."""
    rootfs = make_rootfs(tmp / f"rootfs-{version}", extra_bytes=extra_bytes)
    (rootfs / "etc/metrica-fleet").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/metrica-fleet/root.json").write_bytes(repo.root_json)
    out = tmp / f"out-{version}"
    assemble.assemble(request(rootfs, out, version=Version(version)))
    return out


def boot(roots: Roots) -> None:
    """The firmware picks the partition; the kernel gets a new boot id."""
    firmware_boot(roots.boot_config, requested_reboot=True)
    roots.boot_id_file.write_text(f"{uuid.uuid4()}\n")


def engine_for(roots: Roots) -> Engine:
    config = load_config(roots)
    return Engine(
        roots=roots,
        config=config,
        firmware=open_firmware(config.firmware, roots),
        events=EventQueue(roots.queue_dir, max_items=100),
        health=HealthChecker(config.health, roots),
    )


def partition_sha256(node: Path, size: int) -> str:
    digest = hashlib.sha256()
    with node.open("rb") as handle:
        left = size
        while left:
            block = handle.read(min(left, 1 << 20))
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def test_install_on_partition_nodes_found_from_the_running_root(tmp_path, require_root):
    repo = ReleaseRepo(tmp_path / "tuf")
    v1 = build(tmp_path, repo, "1.0.0", extra_bytes=0)
    v2 = build(tmp_path, repo, "2.0.0", extra_bytes=300_000)
    manifest = publish_release(repo.path, repo.keys, v2 / assemble.RELEASE_DIR)
    server = FleetServer(repo.path)
    data, proc = tmp_path / "data", tmp_path / "proc"
    (data / "fleet").mkdir(parents=True)
    (proc / "sys/kernel/random").mkdir(parents=True)
    (data / "fleet/updater.yaml").write_text(
        yaml.safe_dump(
            {  # no disk: the updater finds it
                "hardware": "pi4",
                "firmware": {"backend": "simulated", "reboot_command": ["true"]},
                "health": {"docker": "off", "deadline_s": 60},
                "transfer": {"min_free_data_bytes": 0, "retries": 1},
            }
        )
    )
    disk_image = tmp_path / "disk.img"
    shutil.copyfile(v1 / assemble.DISK_IMAGE, disk_image)
    try:
        with loop_device(disk_image) as loop:
            boot_config = tmp_path / "boot-config"
            boot_config.mkdir()
            run(["mcopy", "-i", f"{loop}p1", "::autoboot.txt", str(boot_config)])

            def roots_on(root: Path) -> Roots:
                return Roots(root=root, data=data, boot_config=boot_config, proc=proc)

            with mounted(Path(f"{loop}p4"), tmp_path / "root-a", "-o", "ro") as root_a:
                roots = roots_on(root_a)
                assert find_boot_disk(roots) == loop
                boot(roots)
                engine = engine_for(roots)
                assert engine.disk.path == loop
                assert engine.disk.slot_partition("system", Slot.B).path == Path(f"{loop}p5")
                assert engine.disk.slot_partition("boot", Slot.B).offset == 0
                assert engine.running_version() == Version("1.0.0")
                assert engine.start(Version("2.0.0"), server.tuf_url) is EngineResult.REBOOTING
                assert server.fetched_chunks() > 0
                # Read back through the partition nodes, independently of the updater.
                for image, node in ((ImageName.BOOT, "p3"), (ImageName.SYSTEM, "p5")):
                    expected, _ = manifest.written(image, "b")
                    size = manifest.images[image].size
                    assert partition_sha256(Path(f"{loop}{node}"), size) == expected
                # The running root's partition is refused physically, whatever slot the
                # firmware claims is active.
                system_a = engine.disk.slot_partition("system", Slot.A)
                with pytest.raises(ActiveSlotError, match="running root"):
                    engine.disk.open_for_write(system_a, active=Slot.B, roots=roots)

            boot(roots)  # the trial boot: slot b's system becomes the root
            with mounted(Path(f"{loop}p5"), tmp_path / "root-b", "-o", "ro") as root_b:
                roots = roots_on(root_b)
                engine = engine_for(roots)
                assert engine.boot_state().slot is Slot.B
                assert engine.resume() is EngineResult.IDLE
                assert engine.store.load().state is UpdateState.COMMITTED
                assert engine.running_version() == Version("2.0.0")
            assert autoboot.read(boot_config / "autoboot.txt").committed is Slot.B

            # Without a partition under the root, udev's by-partlabel links lead to the disk.
            links = tmp_path / "dev/disk/by-partlabel"
            links.mkdir(parents=True)
            (links / "data").symlink_to(f"{loop}p6")
            plain = Roots(root=tmp_path, dev=tmp_path / "dev")
            assert find_boot_disk(plain) == loop
    finally:
        server.close()
