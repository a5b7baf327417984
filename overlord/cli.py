"""``overlord``: serve the API, migrate the database, manage tokens, releases, rollouts, devices."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import uvicorn
from pydantic import BaseModel, ValidationError

from fleetcore.cli import run_main, setup_logging
from overlord import migrate
from overlord.audit.models import Channel
from overlord.audit.service import Actor
from overlord.auth import service as auth_service
from overlord.auth.models import KeyRole
from overlord.configvars import sealing
from overlord.db import make_engine, make_sessionmaker, unit_of_work, utcnow
from overlord.devices import service as devices_service
from overlord.devices.models import AdminStatus
from overlord.devices.schemas import DeviceFilter
from overlord.errors import ConfigError
from overlord.releases import gc as releases_gc
from overlord.releases import service as releases_service
from overlord.rollouts import service as rollouts_service
from overlord.rollouts.models import ReleaseKind
from overlord.rollouts.schemas import RolloutCreate, Selector
from overlord.serving import KEEP_ALIVE_S, GuardedHttpToolsProtocol
from overlord.settings import Settings
from signing.targets import TargetKind

PROG = "overlord"
_TOKEN_ROLES = [r.value for r in KeyRole if r is not KeyRole.DEVICE]


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as err:
        raise ConfigError(f"invalid OVERLORD_* settings: {err.errors()[0]['msg']}") from err


def _print(data: Any) -> None:
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    elif isinstance(data, list):
        data = [d.model_dump(mode="json") if isinstance(d, BaseModel) else d for d in data]
    print(json.dumps(data, indent=2, sort_keys=True))


def trusted_proxies(environ: Mapping[str, str]) -> str:
    """The addresses whose X-Forwarded-For is believed (uvicorn's ``FORWARDED_ALLOW_IPS``).

    Loopback by default. ``*`` is refused: every client could then name its own address,
    and per-address rate limits (login, registration, failed authentication) would not hold.
    """
    value = environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
    if "*" in (part.strip() for part in value.split(",")):
        raise ConfigError(
            "FORWARDED_ALLOW_IPS=* would let any client choose its own address",
            hint="set it to the reverse proxy's address (the stack's nginx: 172.31.250.10)",
        )
    return value


def cmd_serve(args: argparse.Namespace) -> None:
    settings = _settings()
    forwarded_allow_ips = trusted_proxies(os.environ)
    if settings.is_sqlite:
        # The embedded default needs zero setup: create or upgrade the schema on start.
        migrate.upgrade(make_engine(settings.database_url))
    uvicorn.run(
        "overlord.app:create_app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        forwarded_allow_ips=forwarded_allow_ips,
        # Header deadline, header size cap and body stall limit (OVERLORD_HTTP_*).
        http=GuardedHttpToolsProtocol,
        timeout_keep_alive=KEEP_ALIVE_S,
        log_level="info" if args.verbose else "warning",
        access_log=bool(args.verbose),
    )


def cmd_db_upgrade(_args: argparse.Namespace) -> None:
    migrate.upgrade(make_engine(_settings().database_url))
    print("database schema is up to date")


def cmd_db_revision(args: argparse.Namespace) -> None:
    """Developer tool: autogenerate a migration from the models against the configured DB."""
    migrate.revise(make_engine(_settings().database_url), args.message)


def _session_factory() -> Callable[[], Any]:
    settings = _settings()
    factory = make_sessionmaker(make_engine(settings.database_url))
    return lambda: unit_of_work(factory)


def _local_actor() -> Actor:
    """This CLI acts with the database's authority, not a key's: audited as the local user."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no $USER (a bare container)
        user = f"uid {os.getuid()}"
    return Actor(
        key_id=None,
        name=f"{user}@{socket.gethostname()}",
        role=None,
        source="local",
        via=Channel.CLI,
    )


def cmd_token_create(args: argparse.Namespace) -> None:
    with _session_factory()() as session:
        _key, token = auth_service.issue_key(
            session, role=KeyRole(args.role), name=args.name, expires_at=None, actor=_local_actor()
        )
    print(token)


def cmd_token_list(_args: argparse.Namespace) -> None:
    with _session_factory()() as session:
        keys = auth_service.list_keys(session)
        _print(
            [
                {
                    "id": k.id,
                    "role": k.role.value,
                    "name": k.name,
                    "device_id": k.device_id,
                    "revoked": k.revoked_at is not None,
                }
                for k in keys
            ]
        )


def cmd_token_revoke(args: argparse.Namespace) -> None:
    with _session_factory()() as session:
        auth_service.revoke_key(session, key_id=args.id, actor=_local_actor())


def cmd_release_list(args: argparse.Namespace) -> None:
    settings = _settings()
    kind = TargetKind(args.kind) if args.kind else None
    _print(
        [
            releases_service.to_public(r)
            for r in releases_service.list_releases(repo_dir=settings.repo_dir, kind=kind)
        ]
    )


def cmd_release_gc(args: argparse.Namespace) -> None:
    settings = _settings()
    gc_plan = releases_gc.collect(
        sessions=make_sessionmaker(make_engine(settings.database_url)),
        repo_dir=settings.repo_dir,
        keep_last=args.keep or settings.release_keep_last,
        metadata_window=timedelta(seconds=settings.metadata_keep_s),
        holder=f"cli/gc/{socket.gethostname()}",
        dry_run=args.dry_run,
        actor=_local_actor(),
    )
    verb = "would delete" if args.dry_run else "deleted"
    for doomed in gc_plan.files:
        print(f"{verb} {doomed.size:>12} {doomed.path.relative_to(settings.repo_dir)}")
    print(
        f"{verb} {len(gc_plan.files)} files, {gc_plan.total_bytes} bytes; "
        f"releases dropped: {', '.join(gc_plan.dropped_releases) or 'none'}"
    )


def cmd_rollout_create(args: argparse.Namespace) -> None:
    settings = _settings()
    labels = dict(item.split("=", 1) for item in args.label)
    spec = RolloutCreate.model_validate(
        {
            "name": args.name,
            "kind": args.kind,
            "role": args.role,
            "version": args.version,
            "selector": Selector.model_validate(
                {
                    "groups": args.group,
                    "labels": labels,
                    "hardware": args.hardware,
                    "boards": args.board,
                }
            ),
            "min_bootloader": args.min_bootloader,
            "canary_devices": args.canary,
            "stages": args.stages,
            "success_window_s": args.success_window,
            "stage_timeout_s": args.stage_timeout,
            "failure_threshold": args.failure_threshold,
            "start": not args.paused,
        }
    )
    with _session_factory()() as session:
        rollout = rollouts_service.create_rollout(
            session, spec=spec, repo_dir=settings.repo_dir, actor=_local_actor()
        )
        _print(rollouts_service.to_public(session, rollout))


def cmd_rollout_list(_args: argparse.Namespace) -> None:
    with _session_factory()() as session:
        rollouts = rollouts_service.list_rollouts(session)
        _print(rollouts_service.public_rollouts(session, rollouts))


def _rollout_action(action: Callable[..., Any]) -> Callable[[argparse.Namespace], None]:
    def run(args: argparse.Namespace) -> None:
        with _session_factory()() as session:
            rollout = action(session, rollout_id=args.id, actor=_local_actor())
            _print(rollouts_service.to_public(session, rollout))

    return run


def cmd_device_list(args: argparse.Namespace) -> None:
    settings = _settings()
    with _session_factory()() as session:
        items, total = devices_service.list_devices(
            session,
            filters=DeviceFilter(
                image_version=args.image_version, role=args.role, label=args.label
            ),
            limit=args.limit,
            offset=0,
            offline_after_s=settings.offline_after_s,
        )
        _print({"total": total, "items": [i.model_dump(mode="json") for i in items]})


def cmd_device_status(args: argparse.Namespace) -> None:
    settings = _settings()
    with _session_factory()() as session:
        device = devices_service.set_admin_status(
            session, device_id=args.id, status=AdminStatus(args.status), actor=_local_actor()
        )
        _print(
            devices_service.to_public(
                device, now=utcnow(), offline_after_s=settings.offline_after_s
            )
        )


def cmd_config_key(_args: argparse.Namespace) -> None:
    """A fresh OVERLORD_CONFIG_KEY; losing it loses every secret value sealed under it."""
    print(sealing.new_key())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API (migrates SQLite on start)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db", required=True)
    db.add_parser("upgrade", help="apply migrations").set_defaults(func=cmd_db_upgrade)
    revision = db.add_parser("revision", help="autogenerate a migration (developers)")
    revision.add_argument("message")
    revision.set_defaults(func=cmd_db_revision)

    sub.add_parser(
        "config-key", help="print a new OVERLORD_CONFIG_KEY (seals secret configuration values)"
    ).set_defaults(func=cmd_config_key)

    token = sub.add_parser("token", help="credentials").add_subparsers(dest="token", required=True)
    create = token.add_parser("create", help="create a token and print it once")
    create.add_argument("--role", required=True, choices=_TOKEN_ROLES)
    create.add_argument("--name", default="")
    create.set_defaults(func=cmd_token_create)
    token.add_parser("list").set_defaults(func=cmd_token_list)
    revoke = token.add_parser("revoke")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(func=cmd_token_revoke)

    release = sub.add_parser(
        "release", aliases=["releases"], help="signed releases"
    ).add_subparsers(dest="release", required=True)
    rel_list = release.add_parser("list")
    rel_list.add_argument("--kind", choices=[k.value for k in TargetKind])
    rel_list.set_defaults(func=cmd_release_list)
    rel_gc = release.add_parser(
        "gc",
        help="delete releases, chunks and metadata no device needs (see docs/operations.md)",
    )
    rel_gc.add_argument("--dry-run", action="store_true", help="list what would go, with sizes")
    rel_gc.add_argument(
        "--keep",
        type=int,
        help="newest releases kept per OS/role (default OVERLORD_RELEASE_KEEP_LAST)",
    )
    rel_gc.set_defaults(func=cmd_release_gc)

    rollout = sub.add_parser("rollout", help="staged rollouts").add_subparsers(
        dest="rollout", required=True
    )
    ro_create = rollout.add_parser("create")
    ro_create.add_argument("name")
    ro_create.add_argument("--kind", choices=[k.value for k in ReleaseKind], default="os")
    ro_create.add_argument("--role")
    ro_create.add_argument("--version", required=True)
    ro_create.add_argument("--group", action="append", default=[], help="repeatable")
    ro_create.add_argument("--label", action="append", default=[], help="key=value, repeatable")
    ro_create.add_argument("--hardware", action="append", default=[])
    ro_create.add_argument("--board", action="append", default=[], help="pi400, cm4, ...")
    ro_create.add_argument(
        "--min-bootloader",
        metavar="VERSION",
        help="--kind os: hold the release back from devices with an older EEPROM bootloader",
    )
    ro_create.add_argument("--canary", type=int, default=1)
    ro_create.add_argument("--stages", type=int, nargs="+", default=[10, 50, 100])
    ro_create.add_argument("--success-window", type=int, default=600)
    ro_create.add_argument(
        "--stage-timeout",
        type=int,
        default=7200,
        help="seconds after admission before a silent device counts as failed",
    )
    ro_create.add_argument("--failure-threshold", type=float, default=0.05)
    ro_create.add_argument("--paused", action="store_true", help="create without starting")
    ro_create.set_defaults(func=cmd_rollout_create)
    rollout.add_parser("list").set_defaults(func=cmd_rollout_list)
    for verb, action in (
        ("pause", rollouts_service.pause),
        ("resume", rollouts_service.resume),
        ("abort", rollouts_service.abort),
    ):
        cmd = rollout.add_parser(verb)
        cmd.add_argument("id", type=int)
        cmd.set_defaults(func=_rollout_action(action))

    device = sub.add_parser("device", help="the device registry").add_subparsers(
        dest="device", required=True
    )
    dev_list = device.add_parser("list")
    dev_list.add_argument("--image-version")
    dev_list.add_argument("--role")
    dev_list.add_argument("--label")
    dev_list.add_argument("--limit", type=int, default=100)
    dev_list.set_defaults(func=cmd_device_list)
    dev_status = device.add_parser("status")
    dev_status.add_argument("id")
    dev_status.add_argument("status", choices=[s.value for s in AdminStatus])
    dev_status.set_defaults(func=cmd_device_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)

    def body() -> None:
        try:
            args.func(args)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"invalid input at {where}: {first['msg']}") from err

    return run_main(PROG, body)
