"""``fleet-sign``: create, sign, rotate and verify a release repository."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from fleetcore.cli import run_main, setup_logging
from fleetcore.errors import VersionError
from fleetcore.release import Hardware
from fleetcore.version import Version
from signing.bootloader import publish_bootloader
from signing.client import ReleaseClient
from signing.errors import RepositoryError
from signing.keys import PASSPHRASE_ENV, KeyStore
from signing.repository import (
    ROLES,
    add_targets,
    init_repository,
    publish_release,
    refresh_timestamp,
    rotate_keys,
)
from signing.targets import TargetCustom, TargetKind, TargetSpec, payload_digest

KEYS_ENV = "FLEET_SIGN_KEYS"
PROG = "fleet-sign"


def _keydir(args: argparse.Namespace) -> Path:
    if args.keys:
        return Path(args.keys)
    if os.environ.get(KEYS_ENV):
        return Path(os.environ[KEYS_ENV])
    raise RepositoryError("no key directory given", hint=f"pass --keys DIR or set {KEYS_ENV}")


def _hardware(text: str) -> tuple[Hardware, ...]:
    try:
        return tuple(Hardware(part.strip()) for part in text.split(",") if part.strip())
    except ValueError as err:
        choices = ", ".join(h.value for h in Hardware)
        raise argparse.ArgumentTypeError(
            f"unknown hardware in {text!r}; choose from {choices}"
        ) from err


def _version(text: str) -> Version:
    try:
        return Version(text)
    except VersionError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _passphrase() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode() if value else None


def cmd_init(args: argparse.Namespace) -> None:
    keydir = _keydir(args)
    if (keydir / "offline").exists() or (keydir / "online").exists():
        keys = KeyStore.open(keydir)
    else:
        keys = KeyStore.generate(keydir, root_keys=args.root_keys, passphrase=_passphrase())
    init_repository(Path(args.repo), keys, root_threshold=args.root_threshold)
    print(f"created TUF repository {args.repo} (keys in {keydir})")


def cmd_add(args: argparse.Namespace) -> None:
    path = Path(args.file)
    size, sha256 = payload_digest(path)
    custom = TargetCustom(
        kind=args.kind,
        version=args.version,
        hardware=args.hardware,
        uncompressed_size=size,
        uncompressed_sha256=sha256,
        version_floor=args.floor,
    )
    keys = KeyStore.open(_keydir(args))
    md = add_targets(Path(args.repo), keys, [TargetSpec(path, args.name, custom)])
    print(f"added {args.name} (targets version {md.signed.version})")


def cmd_add_release(args: argparse.Namespace) -> None:
    keys = KeyStore.open(_keydir(args))
    manifest = publish_release(Path(args.repo), keys, Path(args.release))
    print(f"published OS release {manifest.version} for {', '.join(manifest.hardware)}")


def cmd_add_bootloader(args: argparse.Namespace) -> None:
    keys = KeyStore.open(_keydir(args))
    version = publish_bootloader(
        Path(args.repo),
        keys,
        family=args.hardware,
        image_path=Path(args.image),
        recovery_path=Path(args.recovery),
        min_updater_version=args.min_updater,
        customer_key=Path(args.customer_key) if args.customer_key else None,
        signed_boot_off=args.signed_boot_off,
    )
    print(f"published bootloader release {version} for {args.hardware.value}")


def cmd_timestamp(args: argparse.Namespace) -> None:
    refresh_timestamp(Path(args.repo), KeyStore.open(_keydir(args)))
    print("re-signed snapshot and timestamp")


def cmd_rotate(args: argparse.Namespace) -> None:
    keys = KeyStore.open(_keydir(args))
    version = rotate_keys(Path(args.repo), keys, args.role, passphrase=_passphrase())
    print(f"rotated {args.role} keys; root is now version {version}")


def cmd_verify(args: argparse.Namespace) -> None:
    try:
        root = Path(args.root).read_bytes()
    except OSError as err:
        raise RepositoryError(f"cannot read trusted root {args.root}: {err.strerror}") from err
    with tempfile.TemporaryDirectory(prefix="fleet-sign-verify-") as scratch:
        client = ReleaseClient(
            metadata_dir=Path(args.metadata_dir or scratch), base_url=args.url, bootstrap_root=root
        )
        client.refresh()
        target = client.get_target(args.name)
        if args.out:
            client.download(target, Path(args.out))
        else:
            client.read(target)
    report = {
        "name": target.name,
        "length": target.length,
        "sha256": target.sha256,
        "custom": target.custom.model_dump(mode="json") if target.custom else None,
    }
    json.dump(report, sys.stdout, indent=2)
    print()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Create, sign, rotate and verify the Metrica Fleet release repository.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    keys_help = f"key directory (default: ${KEYS_ENV}); offline/ and online/ inside"

    p = sub.add_parser("init", help="create a repository (and keys, if KEYDIR has none)")
    p.add_argument("repo", metavar="REPO")
    p.add_argument("--keys", help=keys_help)
    p.add_argument("--root-keys", type=int, default=1, help="root keys to create (production: 3)")
    p.add_argument(
        "--root-threshold", type=int, default=1, help="root signatures needed (production: 2)"
    )
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("add", help="add a target with Metrica custom metadata and re-sign")
    p.add_argument("repo", metavar="REPO")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--name", required=True, help="target name, e.g. roles/camera/1.2.0.tar.zst")
    p.add_argument("--kind", required=True, type=TargetKind, choices=list(TargetKind))
    p.add_argument("--version", required=True, type=_version)
    p.add_argument("--hardware", type=_hardware, default=(Hardware.PI4, Hardware.PI5))
    p.add_argument("--floor", type=_version, help="version floor devices record after installing")
    p.add_argument("--keys", help=keys_help)
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("add-release", help="publish a fleet-image release directory")
    p.add_argument("repo", metavar="REPO")
    p.add_argument("release", metavar="RELEASE_DIR")
    p.add_argument("--keys", help=keys_help)
    p.set_defaults(func=cmd_add_release)

    p = sub.add_parser(
        "add-bootloader", help="publish an rpi-eeprom image and its recovery.bin for one family"
    )
    p.add_argument("repo", metavar="REPO")
    p.add_argument("image", metavar="PIEEPROM_BIN", help="e.g. pieeprom-2024-04-15.bin")
    p.add_argument("recovery", metavar="RECOVERY_BIN", help="recovery.bin of the same release")
    p.add_argument("--hardware", required=True, type=Hardware, choices=[Hardware.PI4, Hardware.PI5])
    p.add_argument("--min-updater", type=_version, help="oldest updater that may install it")
    step = p.add_mutually_exclusive_group()
    step.add_argument(
        "--customer-key",
        metavar="PUB_PEM",
        help="embed this RSA-2048 public key with SIGNED_BOOT=1 (a rollover's close step)",
    )
    step.add_argument(
        "--signed-boot-off",
        action="store_true",
        help="SIGNED_BOOT=0 and no key in the image (a rollover's open step)",
    )
    p.add_argument("--keys", help=keys_help)
    p.set_defaults(func=cmd_add_bootloader)

    p = sub.add_parser("timestamp", help="re-sign snapshot and timestamp with the online keys")
    p.add_argument("repo", metavar="REPO")
    p.add_argument("--keys", help=keys_help)
    p.set_defaults(func=cmd_timestamp)

    p = sub.add_parser("rotate", help="replace a role's keys (a new root version)")
    p.add_argument("repo", metavar="REPO")
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument("--keys", help=keys_help)
    p.set_defaults(func=cmd_rotate)

    p = sub.add_parser("verify", help="download and verify a target the way a device does")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--root", required=True, help="trusted root.json (as shipped in the image)")
    p.add_argument("--url", required=True, help="repository base URL (serving metadata/, targets/)")
    p.add_argument("--out", help="write the verified target here")
    p.add_argument("--metadata-dir", help="keep trusted metadata here (default: a temp dir)")
    p.set_defaults(func=cmd_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_main(PROG, lambda: args.func(args))
