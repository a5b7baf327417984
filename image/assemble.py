"""``fleet-image assemble``: a rootfs folder becomes an A/B disk image and an OTA release.

Everything is built in a hidden folder beside OUT and renamed into place at the end, so a
failure leaves no partial output behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from fleetcore.atomic import atomic_write
from fleetcore.boards import PI_FAMILIES
from fleetcore.layout import CONFIG_LABEL, Slot, autoboot_txt, boot_label, system_label
from fleetcore.release import SLOT_INDEX_DIR, Hardware, ImageName, Manifest
from fleetcore.verity import VerityParams
from fleetcore.version import Version
from image import bootfiles, disk, encrypteddata, filesystems, release, secureboot, verity
from image.errors import InputError, LayoutError
from image.filesystems import SystemSpec
from image.layout import (
    MIB,
    Layout,
    Sizes,
    cmdline_txt,
    derived_uuid,
    plan,
)
from image.progress import step

BOOT_FILES = Path("boot/firmware")
# Where the updater reads the running image version (updater.paths.Roots.image_version_file).
VERSION_FILE = Path("etc/metrica-fleet/version")
DEFAULT_CMDLINE = "console=serial0,115200 console=tty1"
DISK_IMAGE = "disk.img"
RELEASE_DIR = "release"


@dataclass(frozen=True)
class Request:
    rootfs: Path
    out: Path
    version: Version
    # The families the release targets; None: every Pi family whose boot files are complete.
    hardware: Sequence[Hardware] | None
    sizes: Sizes
    system: SystemSpec
    epoch: int
    # Previous release folders to make chunk deltas from (image.delta, ADR 0073).
    delta_from: Sequence[Path] = ()
    # The RSA-2048 private key that signs each slot's boot.img; None: an unsigned image.
    boot_key: Path | None = None
    # More public boot keys the image's updater accepts on a new slot (a key rollover).
    boot_trust: Sequence[Path] = ()
    # Append a dm-verity hash tree to the system image and pin it in cmdline.txt (ADR 0071);
    # a boot key implies it (the signed boot.img then pins the root).
    verity: bool = False
    # Leave the data partition for the device to format as LUKS2 at first boot (ADR 0076);
    # None: as the rootfs's build config chose (encrypteddata.SETTING_FILE).
    encrypt_data: bool | None = None


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH from the environment; 0 without it, so builds are reproducible."""
    text = os.environ.get("SOURCE_DATE_EPOCH", "0")
    if not text.isdigit():
        raise InputError(f"SOURCE_DATE_EPOCH must be a number of seconds, not {text!r}")
    return int(text)


def assemble(req: Request) -> Manifest:
    """Build OUT/disk.img and OUT/release/ from the rootfs."""
    _check_input(req)
    req = dataclasses.replace(
        req,
        hardware=_check_boot_files(req),
        encrypt_data=encrypteddata.wanted(req.rootfs, req.encrypt_data),
    )
    signer = _secure_boot(req)
    layout = plan(req.sizes, seed=f"{req.version}:{req.epoch}")
    with _staging(req.out) as stage:
        manifest = _build(req, layout, stage, signer)
    return manifest


def _secure_boot(req: Request) -> secureboot.BootSigner | None:
    """The boot.img signer for ``--boot-key`` (its key and the boot files checked first)."""
    if req.boot_key is None:
        return None
    folder = req.rootfs / BOOT_FILES
    secureboot.check_boot_files(bootfiles.BootFiles.read(folder), folder)
    return secureboot.BootSigner.load(req.boot_key, ts=req.epoch, trust=tuple(req.boot_trust))


def _check_input(req: Request) -> None:
    if req.boot_trust and req.boot_key is None:
        raise InputError(
            "--boot-trust needs --boot-key",
            hint="an unsigned image trusts no boot keys; its updater leaves boot.sig to the "
            "bootloader",
        )
    if not req.rootfs.is_dir():
        raise InputError(f"rootfs {req.rootfs} is not a folder")
    if not (req.rootfs / BOOT_FILES).is_dir():
        raise InputError(
            f"rootfs {req.rootfs} has no {BOOT_FILES}/",
            hint="the boot partition is filled from DIR/boot/firmware (Raspberry Pi OS layout)",
        )
    if req.out.exists() and (not req.out.is_dir() or any(req.out.iterdir())):
        raise InputError(f"output {req.out} already exists and is not empty")
    for previous in req.delta_from:  # refused now, not after the build
        release.read_previous(previous)


def _check_boot_files(req: Request) -> tuple[Hardware, ...]:
    """The families the release targets, each with every boot file its boards load."""
    files = bootfiles.BootFiles.read(req.rootfs / BOOT_FILES)
    if req.hardware is None:
        found = tuple(files.families())
        if not found:
            raise InputError(
                f"{req.rootfs / BOOT_FILES} serves no whole board family: "
                f"{bootfiles.check(files, PI_FAMILIES)}",
                hint="install the firmware, kernel and device trees, or name --hardware",
            )
        return found
    problem = bootfiles.check(files, req.hardware)
    if problem is not None:
        raise InputError(
            f"{req.rootfs / BOOT_FILES} lacks boot files: {problem}",
            hint="an image for a family boots each of its boards (docs/boards.md); "
            "leave out --hardware to target the families the rootfs serves",
        )
    return tuple(req.hardware)


@contextlib.contextmanager
def _staging(out: Path) -> Iterator[Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield stage
        if out.exists():
            out.rmdir()
        (stage / "result").rename(out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _build(
    req: Request, layout: Layout, stage: Path, signer: secureboot.BootSigner | None
) -> Manifest:
    work, result = stage / "work", stage / "result"
    work.mkdir()
    (result / RELEASE_DIR).mkdir(parents=True)
    seed = f"{req.version}:{req.epoch}"

    # The updater reads the running version from the image itself: stamp it in first.
    version_file = req.rootfs / VERSION_FILE
    version_file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(version_file, f"{req.version}\n".encode())
    secureboot.write_trust(req.rootfs, signer)
    system_img = work / "system.img"
    with step(f"system image ({req.system})"):
        filesystems.make_system(
            system_img,
            src=req.rootfs,
            spec=req.system,
            epoch=req.epoch,
            fs_uuid=derived_uuid(seed, "fs:system"),
            exclude=[str(BOOT_FILES)],
        )
    verity_params = _verity_hook(req, system_img)
    slot_size = layout.get(system_label(Slot.A)).size
    if system_img.stat().st_size > slot_size:
        raise LayoutError(
            f"system image is {_mib(system_img.stat().st_size)} MiB but slot {system_label(Slot.A)}"
            f" has {slot_size // MIB} MiB",
            hint="raise it with --sizes system=SIZE",
        )

    boot_imgs = {slot: work / f"{boot_label(slot)}.vfat" for slot in Slot}
    with step("boot partitions"):
        for slot, img in boot_imgs.items():
            tree = _boot_tree(req, work, slot, verity_params)
            if signer is not None:
                # One volume id for both slots' boot.img: they differ only in cmdline.txt.
                volume_id = derived_uuid(seed, f"fs:{secureboot.BOOT_IMG}")[:8]
                tree = signer.seal(
                    tree, work, label=boot_label(slot), volume_id=volume_id, epoch=req.epoch
                )
            filesystems.make_vfat(
                img,
                size=layout.get(boot_label(slot)).size,
                label=boot_label(slot),
                volume_id=derived_uuid(seed, f"fs:{boot_label(slot)}")[:8],
                content=tree,
                epoch=req.epoch,
            )

    with step("release chunks"):
        manifest = release.write(
            result / RELEASE_DIR,
            version=req.version,
            hardware=tuple(req.hardware or ()),
            system_format=req.system.format,
            created=req.epoch,
            images={ImageName.BOOT: boot_imgs[Slot.A], ImageName.SYSTEM: system_img},
            slot_b={ImageName.BOOT: boot_imgs[Slot.B]},
            delta_from=req.delta_from,
        )

    config_img, data_img = work / "config.vfat", work / "data.img"
    config_tree = work / "config-tree"
    config_tree.mkdir()
    (config_tree / "autoboot.txt").write_text(autoboot_txt())
    data_tree = _data_tree(work, result / RELEASE_DIR)
    if req.encrypt_data:
        encrypteddata.add_seed(config_tree, data_tree / SLOT_INDEX_DIR / Slot.A.value)
        encrypteddata.write_blank_data(data_img)
    else:
        filesystems.make_ext4(
            data_img,
            size=layout.get("data").size,
            label="data",
            fs_uuid=derived_uuid(seed, "fs:data"),
            epoch=req.epoch,
            content=data_tree,
        )
    filesystems.make_vfat(
        config_img,
        size=layout.get(CONFIG_LABEL).size,
        label=CONFIG_LABEL,
        volume_id=derived_uuid(seed, "fs:config")[:8],
        content=config_tree,
        epoch=req.epoch,
    )

    disk_img = result / DISK_IMAGE
    with step("disk image"):
        disk.create(disk_img, layout)
        for label, img in [
            (CONFIG_LABEL, config_img),
            (boot_label(Slot.A), boot_imgs[Slot.A]),
            (boot_label(Slot.B), boot_imgs[Slot.B]),
            (system_label(Slot.A), system_img),
            ("data", data_img),
        ]:
            disk.write_partition(disk_img, layout.get(label), img)
    return manifest


def _data_tree(work: Path, release_dir: Path) -> Path:
    """What the data partition starts with: slot A's chunk indexes, where the updater looks
    for the seed of the next install (so the first update downloads only what changed)."""
    tree = work / "data-tree"
    slot_dir = tree / SLOT_INDEX_DIR / Slot.A.value
    slot_dir.mkdir(parents=True)
    for image in ImageName:
        name = release.index_file(image)
        shutil.copyfile(release_dir / name, slot_dir / name)
    for path in [tree, *tree.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return tree


def _verity_hook(req: Request, system_img: Path) -> VerityParams | None:
    if not (req.verity or req.boot_key is not None):
        return None
    with step("verity hash tree"):
        return verity.append_tree(system_img)


def _boot_tree(req: Request, work: Path, slot: Slot, verity_params: VerityParams | None) -> Path:
    """A copy of the rootfs's boot files with this slot's cmdline.txt."""
    tree = work / f"{boot_label(slot)}-tree"
    src = req.rootfs / BOOT_FILES
    shutil.copytree(src, tree, symlinks=False)
    base = src / "cmdline.txt"
    text = base.read_text() if base.is_file() else DEFAULT_CMDLINE
    extra = [verity_params.kernel_arg()] if verity_params is not None else []
    if req.encrypt_data:
        extra.append(encrypteddata.KERNEL_ARG)
    (tree / "cmdline.txt").write_text(cmdline_txt(text, slot, req.system.format.value, extra))
    return tree


def _mib(size: int) -> int:
    return -(-size // MIB)
