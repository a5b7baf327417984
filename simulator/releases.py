"""Two small OS releases built with ``fleet-image assemble`` from a synthetic rootfs.

No debootstrap: the rootfs is a handful of deterministic files laid out like Raspberry Pi
OS (``boot/firmware`` with a kernel and ``config.txt``, ``usr/``, ``etc/``). Version 2
changes one "package" and the kernel, so the update is a seeded delta, as in the field.
"""

from __future__ import annotations

import random
from pathlib import Path

from fleetcore.release import Hardware, Manifest
from fleetcore.version import Version
from image.assemble import Request, assemble
from image.filesystems import SystemSpec
from image.layout import Sizes
from signing.keys import KeyStore
from signing.repository import publish_release

# The smallest layout assemble accepts; the disk image is a 44 MiB sparse file.
SIZES = Sizes(config=4, boot=8, system=8, data=8)
HARDWARE = Hardware.PI4
_PACKAGES = ("busybox", "libc", "metrica-agent", "camera-daemon", "openssl", "zlib")


# Stand-ins for what the Pi 4 family's firmware loads besides the kernel and initramfs:
# `fleet-image assemble` checks that each board of the family has its boot files.
PI4_FIRMWARE = (
    "start4.elf",
    "fixup4.dat",
    "bcm2711-rpi-4-b.dtb",
    "bcm2711-rpi-400.dtb",
    "bcm2711-rpi-cm4.dtb",
)


def _blob(seed: str, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def write_rootfs(root: Path, version: Version) -> None:
    """A deterministic rootfs for ``version``; each major version changes one package."""
    major = str(version).split(".")[0]
    firmware = root / "boot" / "firmware"
    firmware.mkdir(parents=True)
    (firmware / "config.txt").write_text("arm_64bit=1\nkernel=vmlinuz\ninitramfs initrd.img\n")
    (firmware / "vmlinuz").write_bytes(_blob(f"kernel-{major}", 600_000))
    (firmware / "initrd.img").write_bytes(_blob("initrd", 200_000))
    for name in PI4_FIRMWARE:
        (firmware / name).write_bytes(_blob(name, 2_000))
    (root / "etc" / "metrica-fleet").mkdir(parents=True)
    (root / "etc" / "metrica-fleet" / "version").write_text(f"{version}\n")
    (root / "etc" / "hostname").write_text("metrica\n")
    lib = root / "usr" / "lib"
    lib.mkdir(parents=True)
    for index, name in enumerate(_PACKAGES):
        # The first package is the one a new major version changes.
        generation = major if index == 0 else "1"
        (lib / f"{name}.so").write_bytes(_blob(f"{name}-{generation}", 300_000))


def build_release(workdir: Path, version: Version, *, boot_key: Path | None = None) -> Path:
    """Assemble ``version`` into ``workdir/build/<version>``; returns that folder.

    ``boot_key``: sign each slot's boot.img with it (``fleet-image assemble --boot-key``)."""
    rootfs = workdir / "rootfs" / str(version)
    write_rootfs(rootfs, version)
    out = workdir / "build" / str(version)
    assemble(
        Request(
            rootfs=rootfs,
            out=out,
            version=version,
            hardware=(HARDWARE,),
            sizes=SIZES,
            system=SystemSpec(),
            epoch=0,
            boot_key=boot_key,
        )
    )
    return out


def publish(repo_dir: Path, keys: KeyStore, build: Path) -> Manifest:
    """Sign and publish an assembled release into the Overlord's repository folder."""
    return publish_release(repo_dir, keys, build / "release")
