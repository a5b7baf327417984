"""The harness's own test card: the fleet's GPT layout with a busybox guest on both slots.

It stands in for the real image until ``fleet-image`` lands: a real Debian arm64 kernel, a
busybox initramfs whose /init (``guest/init``) acts out ``guest-plan.txt`` from its boot
partition, and the fleet's partitions in `fleetcore.layout` (config, boot_a, boot_b, system_a,
system_b, data).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from fleetcore.layout import LABELS
from fleetcore.run import run
from harness import autoboot
from harness.cpio import Archive
from harness.debian import DebianCache
from harness.disk import FatVolume, partition, partitions
from harness.errors import GuestAssetError

GUEST_INIT = Path(__file__).with_name("guest") / "init"
GUEST_MODULES = (
    "virtio_pci",
    "virtio_blk",
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "nls_utf8",
    "virtio_net",
    "crc32c_generic",
    "ext4",
)
"""What the busybox guest needs from the Debian kernel's modules: the card (vfat, and ext4
for /data, whose checksums need crc32c loaded first) and the network."""

HEALTHY_MARKER = "guest: healthy on partition"
CMDLINE = "console=ttyAMA0 rdinit=/init panic=0"
PLAN = "guest-plan.txt"
MIB = 1024 * 1024

BASIC_DATA = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
LINUX_FS = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"


@dataclass(frozen=True)
class Slice:
    label: str
    size_mib: int
    kind: str


# The shared partition order (fleetcore.layout) with sizes for the harness's own guests.
LAYOUT = tuple(
    Slice(label, size, kind)
    for label, size, kind in zip(
        LABELS, (32, 48, 48, 8, 8, 16), ("fat", "fat", "fat", "ext4", "ext4", "ext4"), strict=True
    )
)
FIRST_MIB = 1


@dataclass(frozen=True)
class GuestAssets:
    kernel: Path
    modules: Path
    """``lib/modules/<version>`` of the unpacked kernel package."""
    busybox: Path


def guest_assets(cache: DebianCache) -> GuestAssets:
    """The real Debian arm64 kernel and busybox-static, fetched once and cached by content."""
    with cache.lock():
        kernel_root = cache.unpacked(cache.kernel_package(), kind="kernel")
        busybox_root = cache.unpacked(cache.package("busybox-static"), kind="busybox")
    kernels = sorted((kernel_root / "boot").glob("vmlinuz-*"))
    versions = sorted((kernel_root / "lib" / "modules").iterdir())
    if len(kernels) != 1 or len(versions) != 1:
        raise GuestAssetError(f"{kernel_root}: expected one kernel and one module tree")
    busybox = busybox_root / "bin" / "busybox"
    if not busybox.is_file():
        raise GuestAssetError(f"{busybox_root}: no bin/busybox")
    return GuestAssets(kernels[0], versions[0], busybox)


def _module_index(modules: Path) -> dict[str, Path]:
    return {ko.name[: -len(".ko")].replace("-", "_"): ko for ko in modules.rglob("*.ko")}


def _depends(ko: Path) -> list[str]:
    """The ``depends=`` entry of a module's .modinfo section (NUL-separated strings)."""
    data = ko.read_bytes()
    start = data.find(b"\0depends=")
    if start < 0:
        return []
    value = data[start + len(b"\0depends=") : data.index(b"\0", start + 1)].decode()
    return [name.replace("-", "_") for name in value.split(",") if name]


def module_closure(modules: Path, wanted: tuple[str, ...]) -> list[Path]:
    """``wanted`` modules and what they depend on, dependencies first (insmod order)."""
    index = _module_index(modules)
    ordered: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        if name not in index:
            raise GuestAssetError(f"kernel module {name} not in {modules}")
        for dependency in _depends(index[name]):
            visit(dependency)
        ordered.append(index[name])

    for name in wanted:
        visit(name)
    return ordered


def build_initramfs(assets: GuestAssets) -> bytes:
    archive = Archive()
    for directory in ("bin", "dev", "etc", "lib", "lib/modules", "proc", "sys"):
        archive.directory(directory)
    archive.char_device("dev/console", 5, 1)
    archive.file("bin/busybox", assets.busybox.read_bytes(), mode=0o755)
    archive.symlink("bin/sh", "busybox")
    archive.file("init", GUEST_INIT.read_bytes(), mode=0o755)
    order = []
    for ko in module_closure(assets.modules, GUEST_MODULES):
        archive.file(f"lib/modules/{ko.name}", ko.read_bytes())
        order.append(ko.name)
    archive.file("etc/modules.order", "".join(f"{name}\n" for name in order).encode())
    return archive.gzipped()


def _partition_table() -> str:
    lines = ["label: gpt", f"first-lba: {FIRST_MIB * MIB // 512}"]
    for piece in LAYOUT:
        kind = BASIC_DATA if piece.kind == "fat" else LINUX_FS
        lines.append(f"size={piece.size_mib}MiB, type={kind}, name={piece.label}")
    return "\n".join(lines) + "\n"


def build_disk(image: Path, assets: GuestAssets, initrd: bytes) -> None:
    """Write a fresh test card: A committed, B the trial slot, both with the busybox guest."""
    total_mib = FIRST_MIB + sum(p.size_mib for p in LAYOUT) + 1
    image.unlink(missing_ok=True)
    with image.open("wb") as handle:
        handle.truncate(total_mib * MIB)
    run(["sfdisk", "--quiet", image], input=_partition_table().encode())
    with tempfile.TemporaryDirectory(prefix="testdisk-") as tmp:
        work = Path(tmp)
        initrd_file = work / "initrd.img"
        initrd_file.write_bytes(initrd)
        for piece in LAYOUT:
            part = partition(image, label=piece.label)
            if piece.kind == "fat":
                label = piece.label.upper()
                blocks = str(part.size // 1024)
                run(["mkfs.vfat", f"--offset={part.start // 512}", "-n", label, image, blocks])
            else:
                tree = work / piece.label
                tree.mkdir()
                (tree / "partition-label").write_text(f"{piece.label}\n")
                offset, size = f"offset={part.start}", f"{part.size // 1024}k"
                run(
                    [
                        "mke2fs",
                        "-q",
                        "-t",
                        "ext4",
                        "-L",
                        piece.label,
                        "-d",
                        tree,
                        "-E",
                        offset,
                        image,
                        size,
                    ]
                )
        config = FatVolume(image, partition(image, label="config"))
        config.write("autoboot.txt", autoboot.render(committed=2, trial=3))
        for label, slot in (("boot_a", "a"), ("boot_b", "b")):
            boot = FatVolume(image, partition(image, label=label))
            boot.put(assets.kernel, f"vmlinuz-{assets.modules.name}")
            boot.put(initrd_file, "initrd.img")
            boot.write("cmdline.txt", f"{CMDLINE} fleet.slot={slot}\n".encode())
            boot.write(PLAN, b"normal: healthy poweroff\ntryboot: healthy poweroff\n")


def fat_card(image: Path, slices: list[tuple[str, int]]) -> Path:
    """A small GPT card of FAT partitions (label, MiB), for tests that need no guest."""
    total = FIRST_MIB + sum(mib for _, mib in slices) + 1
    with image.open("wb") as handle:
        handle.truncate(total * MIB)
    table = "label: gpt\n" + "".join(f"size={mib}MiB, name={label}\n" for label, mib in slices)
    run(["sfdisk", "--quiet", image], input=table.encode())
    for part in partitions(image):
        run(["mkfs.vfat", f"--offset={part.start // 512}", image, str(part.size // 1024)])
    return image


def set_plan(image: Path, label: str, *, normal: str, tryboot: str) -> None:
    """What the guest on boot partition ``label`` does in a normal boot and in a trial boot.

    Actions, in order: healthy, say WORD, sleep N, request-tryboot, commit, record WORD,
    net-up, fetch PATH, hang, panic, reboot, poweroff (see ``guest/init``).
    """
    plan = f"normal: {normal}\ntryboot: {tryboot}\n"
    FatVolume(image, partition(image, label=label)).write(PLAN, plan.encode())
