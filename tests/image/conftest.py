"""Shared fixtures: a small synthetic rootfs and one assembled image per test session."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetcore.release import Hardware
from fleetcore.rolebundle.bundle import load_bundle
from fleetcore.rolebundle.images import archive_path, carried_ids
from fleetcore.version import Version
from image import assemble, safemode
from image.filesystems import SystemSpec
from image.layout import Sizes
from updater.cli import SAFE_MODE_BUNDLE

FIXTURES = Path(__file__).parent / "fixtures"
EPOCH = 1700000000
VERSION = "1.2.0"
SMALL = Sizes(config=4, boot=16, system=24, data=16)


def assert_safe_mode_shipped(rootfs: Path) -> None:
    """The safe-mode stack is where the role manager starts it from, valid, root-owned, and
    carries the one image it names, so safe mode needs no registry (ADR 0059)."""
    installed = rootfs / SAFE_MODE_BUNDLE.relative_to("/")
    assert installed == rootfs / safemode.INSTALL_PATH
    bundle = load_bundle(installed)
    (image,) = bundle.spec.images
    assert image.startswith("sha256:"), image
    assert {service["image"] for service in bundle.compose["services"].values()} == {image}
    assert carried_ids(installed) == {image}
    archive = archive_path(installed, image)
    assert archive is not None and archive.stat().st_size > 100_000
    assert not (installed / "image.yaml").exists()
    for path in [installed, *installed.rglob("*")]:
        info = path.lstat()
        assert (info.st_uid, info.st_gid) == (0, 0), path
        assert info.st_mode & 0o022 == 0, path


# Stand-ins for what each family's firmware loads from the boot partition (fleetcore.boards):
# the Pi 4 family's firmware, and every supported board's device tree (Raspberry Pi OS names).
PI4_BOOT_FILES = (
    "start4.elf",
    "fixup4.dat",
    "bcm2711-rpi-4-b.dtb",
    "bcm2711-rpi-400.dtb",
    "bcm2711-rpi-cm4.dtb",
)
PI5_BOOT_FILES = ("bcm2712-rpi-5-b.dtb", "bcm2712-rpi-500.dtb", "bcm2712-rpi-cm5-cm5io.dtb")


def make_rootfs(root: Path, *, seed: int = 1, extra_bytes: int = 0) -> Path:
    """A rootfs shaped like Raspberry Pi OS's: binaries, config, and boot/firmware with the
    boot files of both Pi families (config.txt names one kernel for all: vmlinuz)."""
    rng = random.Random(seed)
    firmware = root / "boot/firmware"
    (firmware / "overlays").mkdir(parents=True)
    for name in PI4_BOOT_FILES + PI5_BOOT_FILES:
        (firmware / name).write_bytes(rng.randbytes(2000))
    (firmware / "vmlinuz").write_bytes(rng.randbytes(1_500_000))
    (firmware / "initrd.img").write_bytes(rng.randbytes(400_000))
    (firmware / "config.txt").write_text(
        "arm_64bit=1\nkernel=vmlinuz\ninitramfs initrd.img followkernel\n"
    )
    (firmware / "cmdline.txt").write_text(
        "console=serial0,115200 console=tty1 root=PARTUUID=deadbeef-02 rootfstype=ext4 "
        "fsck.repair=yes rootwait\n"
    )
    (firmware / "overlays/vc4-kms-v3d.dtbo").write_bytes(rng.randbytes(3000))
    (root / "usr/bin").mkdir(parents=True)
    for i in range(40):
        # Text-like content, so compression and chunking behave as on real binaries.
        words = [rng.choice(["alpha", "beta", "gamma", "delta", "eps"]) for _ in range(8000)]
        (root / f"usr/bin/tool{i}").write_text(" ".join(words))
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text('PRETTY_NAME="Metrica Fleet test"\n')
    # Every fleet rootfs has the fleet's own folder (pi-gen's 03-updater, the debootstrap
    # backend): a signed build adds its boot-keys list there, an unsigned one removes it.
    (root / "usr/share/metrica-fleet").mkdir(parents=True)
    (root / "usr/share/metrica-fleet/hostname").write_text("metrica-test\n")
    (root / "data").mkdir()
    if extra_bytes:
        (root / "usr/lib").mkdir(parents=True)
        (root / "usr/lib/big.bin").write_bytes(rng.randbytes(extra_bytes))
    return root


def request(rootfs: Path, out: Path, **changes: object) -> assemble.Request:
    fields: dict[str, object] = {
        "rootfs": rootfs,
        "out": out,
        "version": Version(VERSION),
        "hardware": (Hardware.PI4, Hardware.PI5),
        "sizes": SMALL,
        "system": SystemSpec(),
        "epoch": EPOCH,
    }
    fields.update(changes)
    return assemble.Request(**fields)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Built:
    rootfs: Path
    out: Path

    @property
    def disk(self) -> Path:
        return self.out / assemble.DISK_IMAGE

    @property
    def release(self) -> Path:
        return self.out / assemble.RELEASE_DIR


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_rootfs(tmp_path_factory.mktemp("rootfs") / "root")


@pytest.fixture(scope="session")
def built(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("assembled") / "out"
    assemble.assemble(request(rootfs, out))
    return Built(rootfs, out)
