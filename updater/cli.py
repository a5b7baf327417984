"""``fleet-updater``: the daemon and the operator's commands on a device."""

from __future__ import annotations

import argparse
import json
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetcore import redact
from fleetcore.cli import run_main, setup_logging
from fleetcore.errors import FleetError, VersionError
from fleetcore.version import Version
from fleetcore.wire import UpdateState
from signing.client import ReleaseClient
from updater import autoboot
from updater.agent import Agent
from updater.config import UpdaterConfig, load_config
from updater.engine import Engine, EngineResult
from updater.errors import ConfigError
from updater.firmware import open_firmware
from updater.health import HealthChecker
from updater.install import Progress
from updater.lock import updater_lock
from updater.notify import Notifier, watchdog_interval
from updater.overlord import OverlordClient
from updater.paths import Roots
from updater.personalise import Personaliser
from updater.queue import EventQueue
from updater.roles import cli as roles_cli
from updater.roles.manager import ManagerConfig, RoleManager
from updater.rolesync import RoleSync
from updater.sources import directory_source, open_source
from updater.space import Reserve

PROG = "fleet-updater"
SAFE_MODE_BUNDLE = Path("/opt/metrica-fleet/safe-mode")


@dataclass
class Device:
    roots: Roots
    config: UpdaterConfig
    engine: Engine
    events: EventQueue
    roles: RoleSync

    @property
    def lock_path(self) -> Path:
        return self.roots.fleet / "lock"


def open_device(roots: Roots, notifier: Notifier | None = None) -> Device:
    config = load_config(roots)
    reserve = Reserve(roots.reserve_file)
    events = EventQueue(
        roots.queue_dir,
        max_items=config.queue_max_items,
        reserve=reserve,
    )
    ping = notifier.watchdog if notifier else (lambda: None)
    health = HealthChecker(config.health, roots, ping=ping)
    engine = Engine(
        roots=roots,
        config=config,
        firmware=open_firmware(config.firmware, roots),
        events=events,
        health=health,
        reserve=reserve,
        tick=ping,
    )
    roles = RoleSync(
        manager=RoleManager(
            ManagerConfig(
                device_id=config.hostname or socket.gethostname(),
                root=roots.data / "roles",
                role_config_dir=roots.fleet / "roles",
                safe_mode_bundle=roots.under_root(SAFE_MODE_BUNDLE),
            )
        ),
        events=events,
        open_client=lambda: _release_reader(roots, config),
        cache_dir=roots.fleet / "role-cache",
        hardware=lambda: engine.hardware,
    )
    health.role_hook = roles.health
    return Device(roots, config, engine, events, roles)


def _release_reader(roots: Roots, config: UpdaterConfig) -> ReleaseClient:
    if config.release_url is None:
        raise ConfigError("no release repository: set overlord_url or repository_url")
    source = open_source(
        config.release_url,
        roots=roots,
        trust_root=config.trust_root,
        transfer=config.transfer,
        proxies=config.proxy_rules(),
    )
    source.close()
    return source.reader


def status(device: Device) -> dict[str, Any]:
    state = device.engine.store.load()
    booted = device.engine.boot_state()
    progress_path = device.roots.install_dir / "progress.json"
    progress = (
        Progress.model_validate_json(progress_path.read_bytes()).model_dump(mode="json")
        if progress_path.exists()
        else None
    )
    engine, refusal = device.engine, device.engine.board_refusal
    board = engine.board
    return {
        "state": state.state.value,
        "running_version": str(engine.running_version(state)),
        "board": board.board.value,
        "board_model": board.model or None,
        "board_revision": f"{board.revision.code:06x}" if board.revision else None,
        "memory_mib": board.memory_mib,
        # The release family this device installs, or why it runs no A/B update.
        "hardware": f"refused: {refusal}" if refusal else engine.hardware.value,
        "booted_slot": booted.slot.value,
        "trial_boot": booted.tryboot,
        "committed_slot": autoboot.read(device.roots.autoboot).committed.value,
        "target_version": str(state.target_version) if state.target_version else None,
        "target_slot": state.target_slot.value if state.target_slot else None,
        "slot_versions": {k.value: str(v) for k, v in state.slot_versions.items()},
        # Written to the inactive slot from a pre-stage hint, waiting for admission (ADR 0082).
        "staged_version": str(staged) if (staged := engine.staged_version()) else None,
        "version_floor": str(state.version_floor) if state.version_floor else None,
        "bad_versions": [str(v) for v in state.bad_versions],
        "trial_attempts": state.trial_attempts,
        "last_failure": state.last_failure,
        "install_progress": progress,
        "queued_events": len(device.events),
        "dropped_events": device.events.dropped_total,
    }


def _print_status(info: dict[str, Any]) -> None:
    width = max(len(k) for k in info)
    for key, value in info.items():
        if isinstance(value, dict | list):
            value = json.dumps(value) if value else "-"
        print(f"{key.replace('_', ' '):<{width}}  {'-' if value is None else value}")


def _version_argument(text: str) -> Version:
    """A malformed version is a usage error (exit 2), like any other bad argument."""
    try:
        return Version(text)
    except VersionError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=PROG, description="Metrica Fleet device updater")
    ap.add_argument("-v", "--verbose", action="count", default=0)
    env = Roots.from_env()
    for flag, default, text in (
        ("--root", env.root, "root of the running image"),
        ("--data", env.data, "data partition mount"),
        ("--boot-config", env.boot_config, "config partition mount (autoboot.txt, fleet.yaml)"),
        ("--device-tree", env.device_tree, "device tree (tryboot state)"),
        ("--sys", env.sys, "sysfs mount"),
        ("--proc", env.proc, "procfs mount"),
        ("--dev", env.dev, "device nodes (disk/by-partlabel links)"),
    ):
        ap.add_argument(flag, type=Path, default=default, help=f"{text} (default {default})")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="the daemon: poll the Overlord and apply updates")
    st = sub.add_parser("status", help="show the update state")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    inst = sub.add_parser("install", help="install a signed release now")
    what = inst.add_mutually_exclusive_group(required=True)
    what.add_argument("file", nargs="?", type=Path, help="a copy of the release repository (USB)")
    what.add_argument(
        "--version", type=_version_argument, help="a version from the configured repository"
    )
    sub.add_parser("commit", help="commit the running trial without waiting for health checks")
    sub.add_parser("rollback", help="fail the running trial and reboot into the committed slot")
    roles_cli.register(sub)
    return ap


def _body(argv: list[str] | None) -> int:
    args = parser().parse_args(argv)
    setup_logging(args.verbose)
    # Device logs reach Loki through the system role: every secret read from here on is
    # masked in every record.
    redact.install()
    if args.command == "roles":
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    roots = Roots(
        root=args.root,
        data=args.data,
        boot_config=args.boot_config,
        device_tree=args.device_tree,
        sys=args.sys,
        proc=args.proc,
        dev=args.dev,
    )
    if args.command == "run":
        return _run(roots)
    device = open_device(roots)
    if args.command == "status":
        info = status(device)
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            _print_status(info)
        return 0
    with updater_lock(device.lock_path, wait=False):
        if args.command == "install":
            if args.file is not None:
                source = directory_source(args.file)
                version = newest_release(args.file)
            else:
                if device.config.release_url is None:
                    raise ConfigError("no release repository configured for --version")
                source, version = device.config.release_url, args.version
            outcome = device.engine.start(version, source)
            state = device.engine.store.load()
            if state.state is UpdateState.FAILED and state.target_version == version:
                # Refused or broken during download or verification: not a success.
                reason = redact.SECRETS.mask(state.last_failure or "")
                print(f"{PROG}: error: install of {version} failed: {reason}", file=sys.stderr)
                return 1
            print(f"{PROG}: install of {version}: {outcome.value}")
            return 0 if outcome is not EngineResult.WAITING else 1
        if args.command == "commit":
            device.engine.commit_now()
            print(f"{PROG}: committed")
            return 0
        outcome = device.engine.rollback_now()
        print(f"{PROG}: rolled back: {outcome.value}")
        return 0


def newest_release(repo: Path) -> Version:
    """The newest OS release in a repository copy: the highest ``targets/os/<version>``.

    Only a hint of what to ask for: the version is then verified through TUF like any other.
    """
    versions = []
    for entry in (repo / "targets" / "os").glob("*"):
        try:
            versions.append(Version(entry.name))
        except VersionError:
            continue
    if not versions:
        raise ConfigError(f"{repo} holds no OS release (targets/os/<version>/)")
    return max(versions)


def _run(roots: Roots) -> int:
    notifier = Notifier()
    device = open_device(roots, notifier)
    if device.config.overlord_url is None:
        raise ConfigError("no overlord_url configured", hint="fleet.yaml or updater.yaml sets it")
    client = OverlordClient(
        device.config.overlord_url,
        timeout=device.config.request_timeout_s,
        proxies=device.config.proxy_rules(),
    )
    agent = Agent(
        roots=roots,
        config=device.config,
        engine=device.engine,
        events=device.events,
        client=client,
        notifier=notifier,
        roles=device.roles,
        personaliser=Personaliser(roots),
    )
    agent.run_forever(watchdog_s=watchdog_interval(), lock=device.lock_path)
    return 0


def _masked(argv: list[str]) -> int | None:
    """:func:`_body`, with the secrets this process has read masked in the error it prints."""
    try:
        return _body(argv)
    except FleetError as err:
        err.args = (redact.SECRETS.mask(str(err)),)
        if err.hint:
            err.hint = redact.SECRETS.mask(err.hint)
        raise


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, lambda: _masked(argv if argv is not None else sys.argv[1:]))
