"""``fleet-image``: build a rootfs, assemble the A/B disk image and release, inspect, flash;
build role container images from Debian packages."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fleetcore.boards import Board, family_of, unsupported_reason
from fleetcore.cli import run_main, setup_logging
from fleetcore.errors import VersionError
from fleetcore.release import Hardware
from fleetcore.version import Version
from image import assemble, config, flash, inspect
from image.backends import BACKENDS, BackendName
from image.errors import InputError
from image.filesystems import SystemSpec
from image.layout import Sizes
from image.roleimage import build as roleimage_build
from image.roleimage import recipe as roleimage_recipe
from image.roleimage.apt import DEFAULT_CACHE

PROG = "fleet-image"


_FAMILIES = {h.value for h in Hardware}
_BOARDS = {b.value for b in Board} - {Board.UNKNOWN.value, Board.QEMU.value}


def _hardware(text: str) -> tuple[Hardware, ...] | None:
    """``--hardware``: release families (pi4, pi5, qemu), or ``auto`` (every Pi family whose
    boot files the rootfs holds). A board's name is refused with the family to name instead,
    and a board without tryboot A/B with the reason."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if items == ["auto"]:
        return None
    families: list[Hardware] = []
    for item in items:
        if item in _FAMILIES:
            families.append(Hardware(item))
            continue
        board = Board(item) if item in _BOARDS else None
        family = family_of(board) if board is not None else None
        if board is not None and family is None:
            raise InputError(
                f"--hardware {item}: {unsupported_reason(board)}; the fleet's A/B image "
                "cannot boot it",
                hint="supported: pi4 (Pi 4, Pi 400, CM4) and pi5 (Pi 5, Pi 500, CM5)",
            )
        if family is not None:
            raise InputError(
                f"--hardware {item}: releases target a family, and {item} is in {family.value}",
                hint=f"use --hardware {family.value} (its image boots every board of the family)",
            )
        known = ", ".join(["auto", *(h.value for h in Hardware)])
        raise InputError(f"invalid hardware list {text!r}: expected some of {known}")
    if not families:
        raise InputError(f"invalid hardware list {text!r}: name at least one family or auto")
    return tuple(dict.fromkeys(families))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0)
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="build a fleet rootfs folder (OUT/rootfs)")
    build.add_argument("--backend", choices=[b.value for b in BackendName], required=True)
    build.add_argument("--config", type=Path, required=True, help="build config (YAML)")
    build.add_argument("--out", type=Path, required=True)

    asm = sub.add_parser("assemble", help="make OUT/disk.img and OUT/release/ from a rootfs")
    asm.add_argument("--rootfs", type=Path, required=True)
    asm.add_argument("--out", type=Path, required=True)
    asm.add_argument("--version", required=True)
    asm.add_argument(
        "--hardware",
        default="auto",
        help="families: comma list of pi4, pi5, qemu; auto (default): each Pi family whose "
        "boot files the rootfs holds",
    )
    asm.add_argument("--sizes", default="", help="MiB per partition: boot=256M,system=1536M,...")
    asm.add_argument("--system", default="squashfs:zstd", help="system image FORMAT[:COMPRESSION]")
    asm.add_argument(
        "--delta-from",
        type=Path,
        action="append",
        default=[],
        metavar="RELEASE",
        help="a previous release folder (OUT/release) to make chunk deltas from; repeatable",
    )
    asm.add_argument(
        "--boot-key",
        type=Path,
        help="RSA-2048 private key (PEM): each boot partition gets a signed boot.img + boot.sig "
        "for Raspberry Pi secure boot; without it the image is unsigned (development)",
    )
    asm.add_argument(
        "--boot-trust",
        type=Path,
        action="append",
        default=[],
        metavar="PUB.pem",
        help="an RSA-2048 public key (PEM) the image's updater accepts on a new slot's boot.sig "
        "besides --boot-key's own: the first step of a boot-key rollover (docs/security.md); "
        "repeatable",
    )
    asm.add_argument(
        "--verity",
        action="store_true",
        help="append a dm-verity hash tree to the system image, its root hash in cmdline.txt "
        "(implied by --boot-key)",
    )
    asm.add_argument(
        "--encrypt-data",
        action=argparse.BooleanOptionalAction,
        help="leave the data partition blank: each device formats it as LUKS2 at first boot "
        "under a key derived from its own secret (ADR 0076); no key exists on the build host. "
        "Default: the build config's encrypt_data, recorded in the rootfs",
    )

    ins = sub.add_parser("inspect", help="show layout, versions and hashes of an image or release")
    ins.add_argument("path", type=Path)
    ins.add_argument(
        "--boot-pubkey",
        type=Path,
        help="customer public key (PEM, RSA-2048): check each boot.sig against it",
    )

    fl = sub.add_parser("flash", help="write a disk image with its first-boot fleet.yaml")
    fl.add_argument("image", type=Path)
    target = fl.add_mutually_exclusive_group(required=True)
    target.add_argument("--device", type=Path, help="block device such as /dev/sdX")
    target.add_argument("--out", type=Path, help="write a personalised image file instead")
    fl.add_argument("--config", type=Path, required=True, help="first-boot fleet.yaml")

    role = sub.add_parser("role-image", help="container images for roles, from Debian packages")
    role_sub = role.add_subparsers(dest="role_command", required=True)
    rb = role_sub.add_parser("build", help="build RECIPE into OUT/<hex>.tar and print its ID")
    rb.add_argument("recipe", type=Path, help="role-image recipe (YAML)")
    rb.add_argument("--arch", choices=[a.value for a in roleimage_recipe.Arch], required=True)
    rb.add_argument("--out", type=Path, required=True)
    rb.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="apt lists and .debs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_main(PROG, lambda: _dispatch(args))


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "build":
        backend = BACKENDS[BackendName(args.backend)](config.load(args.config))
        rootfs = backend.build(args.out)
        print(rootfs)
    elif args.command == "assemble":
        try:
            version = Version(args.version)
        except VersionError as err:
            raise InputError(str(err)) from err
        manifest = assemble.assemble(
            assemble.Request(
                rootfs=args.rootfs,
                out=args.out,
                version=version,
                hardware=_hardware(args.hardware),
                sizes=Sizes.parse(args.sizes),
                system=SystemSpec.parse(args.system),
                epoch=assemble.source_date_epoch(),
                delta_from=tuple(args.delta_from),
                boot_key=args.boot_key,
                boot_trust=tuple(args.boot_trust),
                verity=args.verity,
                encrypt_data=args.encrypt_data,
            )
        )
        print(f"{args.out / assemble.DISK_IMAGE} and release {manifest.version} written")
    elif args.command == "role-image":
        result = roleimage_build.build(
            roleimage_recipe.load(args.recipe),
            roleimage_recipe.Arch(args.arch),
            args.out,
            cache=args.cache,
        )
        print(result.image_id)
    elif args.command == "inspect":
        report = inspect.describe(args.path, args.boot_pubkey)
        sys.stdout.write(report.text)
        if report.unverified:
            raise InputError(
                f"{', '.join(report.unverified)}: boot.sig does not verify against "
                f"{args.boot_pubkey}",
                hint="a board whose bootloader holds that key would refuse to boot it",
            )
    else:
        flash.flash(args.image, config_file=args.config, device=args.device, out=args.out)
    return 0
