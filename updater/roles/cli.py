"""The ``fleet-updater roles`` command group.

``register`` adds the group to the updater's argparse sub-parsers. Every leaf parser sets
``handler``: a callable taking the parsed namespace and returning an exit code, which the
updater's main runs inside ``fleetcore.cli.run_main`` (so a ``FleetError`` becomes one line).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
from pathlib import Path

from fleetcore.rolebundle.bundle import load_bundle
from updater.roles.archive import ZSTD_LEVEL, pack
from updater.roles.compose import ComposeFlavor
from updater.roles.manager import ManagerConfig, RoleManager

DEFAULTS = ManagerConfig(device_id="unset")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    roles = subparsers.add_parser("roles", help="role bundles and the safe-mode stack")
    commands = roles.add_subparsers(dest="roles_command", required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check role bundle folders")
    validate.add_argument("bundles", nargs="+", type=Path, metavar="DIR")
    validate.set_defaults(handler=_validate)

    packer = commands.add_parser("pack", help="validate a bundle and write its tar.zst target")
    packer.add_argument("bundle", type=Path, metavar="DIR")
    packer.add_argument("out", type=Path, metavar="OUT.tar.zst")
    packer.add_argument(
        "--images",
        type=Path,
        metavar="IMGDIR",
        help="add IMGDIR/<hex>.tar (docker save) for each sha256:<hex> image the bundle pins",
    )
    packer.add_argument(
        "--level",
        type=int,
        default=ZSTD_LEVEL,
        help=f"zstd level 1-22 (default {ZSTD_LEVEL}; lower packs large images much faster)",
    )
    packer.set_defaults(handler=_pack)

    apply = commands.add_parser("apply", help="apply a bundle folder or tar.zst by hand")
    apply.add_argument("bundle", type=Path, metavar="BUNDLE")
    _manager_options(apply)
    apply.set_defaults(handler=_apply)

    status = commands.add_parser("status", help="installed roles, versions and health")
    status.add_argument("--json", action="store_true", help="print JSON")
    _manager_options(status)
    status.set_defaults(handler=_status)

    safe = commands.add_parser("safe-mode", help="enter or leave safe mode by hand")
    safe_commands = safe.add_subparsers(dest="safe_mode_command", required=True, metavar="ACTION")
    enter = safe_commands.add_parser("enter", help="stop every role, start the safe-mode stack")
    enter.add_argument("--reason", default="entered by an operator")
    _manager_options(enter)
    enter.set_defaults(handler=_enter)
    leave = safe_commands.add_parser("leave", help="stop the safe-mode stack, start the roles")
    _manager_options(leave)
    leave.set_defaults(handler=_leave)


def _manager_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, default=DEFAULTS.root, help="roles directory")
    parser.add_argument(
        "--safe-mode-bundle", type=Path, default=DEFAULTS.safe_mode_bundle, metavar="DIR"
    )
    parser.add_argument(
        "--role-config-dir", type=Path, default=DEFAULTS.role_config_dir, metavar="DIR"
    )
    parser.add_argument(
        "--device-id",
        default=os.environ.get("FLEET_DEVICE_ID") or socket.gethostname(),
        help="shown on the status page (default: $FLEET_DEVICE_ID or the hostname)",
    )
    parser.add_argument(
        "--compose", type=ComposeFlavor, choices=list(ComposeFlavor), default=DEFAULTS.compose
    )
    parser.add_argument("--project-prefix", default="", help=argparse.SUPPRESS)


def _manager(args: argparse.Namespace) -> RoleManager:
    config = ManagerConfig(
        device_id=args.device_id,
        root=args.root,
        safe_mode_bundle=args.safe_mode_bundle,
        role_config_dir=args.role_config_dir,
        compose=args.compose,
        project_prefix=args.project_prefix,
    )
    return RoleManager(config)


def _validate(args: argparse.Namespace) -> int:
    for path in args.bundles:
        spec = load_bundle(path).spec
        print(f"{path}: ok ({spec.name} {spec.version})")
    return 0


def _pack(args: argparse.Namespace) -> int:
    added = pack(args.bundle, args.out, images_dir=args.images, level=args.level)
    for name in added:
        print(f"{args.out}: carries {name} from {args.images}")
    print(f"{args.out}: written")
    return 0


def _apply(args: argparse.Namespace) -> int:
    outcome = _manager(args).apply_local(args.bundle)
    print(outcome.value)
    return 0 if outcome.value in ("applied", "unchanged") else 1


def _status(args: argparse.Namespace) -> int:
    statuses = _manager(args).status()
    if args.json:
        print(json.dumps([s.model_dump(mode="json") for s in statuses], indent=2))
        return 0
    for status in statuses:
        flag = " (safe mode)" if status.safe_mode else ""
        print(f"{status.name}\t{status.version or '-'}\t{status.health.value}{flag}")
    return 0


def _enter(args: argparse.Namespace) -> int:
    _manager(args).enter_safe_mode(args.reason)
    return 0


def _leave(args: argparse.Namespace) -> int:
    _manager(args).leave_safe_mode()
    return 0
