"""``fleetctl rollouts create|list|show|pause|resume|abort|wait``."""

from __future__ import annotations

import argparse
import time
from typing import Any

from fleetctl.commands import Subparsers, command, group, key_values
from fleetctl.errors import RolloutHalted, ServerError, UsageError
from fleetctl.output import columns
from fleetctl.session import Session

STATES = ("pending", "running", "paused", "halted", "aborted", "completed")
_COLUMNS = columns(
    ("ID", "id"),
    ("NAME", "name"),
    ("KIND", "kind"),
    ("ROLE", "role"),
    ("VERSION", "version"),
    ("STATE", "state"),
    ("STAGE", "stage_label"),
    ("START AT", "start_at"),
    ("DEADLINE", "deadline"),
    ("TARGETING", "targeting"),
    ("DEVICES", "devices"),
    ("FAILED", "failure_ratio"),
)
_SHOW_KEYS = (
    "id",
    "name",
    "kind",
    "role",
    "version",
    "target",
    "targeting",
    "excluding",
    "start_at",
    "deadline",
    "state",
    "stage_label",
    "stages",
    "canary_devices",
    "success_window_s",
    "stage_timeout_s",
    "failure_threshold",
    "failure_ratio",
    "devices",
    "halt_reason",
    "created_at",
    "updated_at",
)


def add(sub: Subparsers) -> None:
    actions = group(sub, "rollouts", "staged rollouts: create, follow, pause, resume, abort")
    p = command(actions, "create", create, "start a staged rollout of a published release")
    p.add_argument("name")
    p.add_argument("--kind", choices=("os", "role", "bootloader"), required=True)
    p.add_argument("--role", help="the role's name, for --kind role")
    p.add_argument("--version", required=True)
    p.add_argument(
        "--group", action="append", default=[], help="only devices in these groups (repeatable)"
    )
    p.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="devices with all"
    )
    p.add_argument("--hardware", action="append", default=[], help="pi4, pi5 (repeatable)")
    p.add_argument(
        "--board",
        action="append",
        default=[],
        help="pi4, pi400, cm4, pi5, pi500, cm5, as the device reports it (repeatable)",
    )
    p.add_argument("--exclude-group", action="append", default=[], metavar="GROUP")
    p.add_argument("--exclude-label", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--exclude-hardware", action="append", default=[], metavar="HARDWARE")
    p.add_argument("--exclude-board", action="append", default=[], metavar="BOARD")
    p.add_argument("--exclude-device", action="append", default=[], metavar="DEVICE_ID")
    p.add_argument(
        "--min-bootloader",
        metavar="VERSION",
        help="--kind os: hold the release back from devices whose EEPROM bootloader is older "
        "than this bootloader release (e.g. 2024.4.15.47534, as 'releases list --kind "
        "bootloader' shows)",
    )
    p.add_argument(
        "--start-at",
        metavar="TIME",
        help="start later: ISO 8601 with a zone, e.g. 2026-12-05T06:00:00+01:00",
    )
    p.add_argument(
        "--deadline", metavar="TIME", help="admit no devices after this time (ISO 8601, zoned)"
    )
    p.add_argument("--canary", type=int, default=1, metavar="N", help="canary devices first")
    p.add_argument(
        "--stages", default="10,50,100", help="percentages after the canary (default 10,50,100)"
    )
    p.add_argument("--success-window", type=int, default=600, metavar="SECONDS")
    p.add_argument("--stage-timeout", type=int, default=7200, metavar="SECONDS")
    p.add_argument("--failure-threshold", type=float, default=0.05, metavar="RATIO")
    p.add_argument("--paused", action="store_true", help="create it paused (resume starts it)")

    p = command(actions, "list", list_rollouts, "list rollouts")
    p.add_argument("--state", choices=STATES)
    for name, func, text in (
        ("show", show, "one rollout and its devices"),
        ("pause", pause, "stop admitting devices (those updating carry on)"),
        ("resume", resume, "continue a paused or halted rollout"),
        ("abort", abort, "end a rollout; devices keep what they run"),
    ):
        command(actions, name, func, text).add_argument("rollout", type=int, metavar="ID")
    p = command(
        actions,
        "wait",
        wait,
        "follow a rollout until it completes (exit 0) or halts or is aborted (exit 1)",
    )
    p.add_argument("rollout", type=int, metavar="ID")
    p.add_argument("--interval", type=float, default=5.0, metavar="SECONDS")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="give up after this long")


def _stages(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"--stages must be comma-separated percentages, not {text!r}") from None


def create(session: Session, args: argparse.Namespace) -> None:
    body = {
        "name": args.name,
        "kind": args.kind,
        "role": args.role,
        "version": args.version,
        "selector": {
            "groups": args.group,
            "labels": key_values(args.label, "--label"),
            "hardware": args.hardware,
            "boards": args.board,
            "exclude": {
                "groups": args.exclude_group,
                "labels": key_values(args.exclude_label, "--exclude-label"),
                "hardware": args.exclude_hardware,
                "boards": args.exclude_board,
                "devices": args.exclude_device,
            },
        },
        "min_bootloader": args.min_bootloader,
        "canary_devices": args.canary,
        "stages": _stages(args.stages),
        "success_window_s": args.success_window,
        "stage_timeout_s": args.stage_timeout,
        "failure_threshold": args.failure_threshold,
        "start": not args.paused,
        "start_at": args.start_at,
        "deadline": args.deadline,
    }
    _record(session, session.client.call("POST", "/rollouts", body=body))


def targeting(selector: dict[str, Any]) -> str:
    """Whom a selector targets in one line: ``groups cameras,doors; label site=north``."""
    parts = [f"groups {','.join(selector['groups'])}" if selector.get("groups") else "all"]
    parts += [f"label {k}={v}" for k, v in (selector.get("labels") or {}).items()]
    if selector.get("hardware"):
        parts.append(f"hardware {','.join(selector['hardware'])}")
    if selector.get("boards"):
        parts.append(f"boards {','.join(selector['boards'])}")
    return "; ".join(parts)


def excluding(selector: dict[str, Any]) -> str | None:
    """Whom it excludes: ``group lab; label bench=yes; device dev-1``, or None."""
    exclude = selector.get("exclude") or {}
    parts = [f"group {g}" for g in exclude.get("groups", [])]
    parts += [f"label {k}={v}" for k, v in (exclude.get("labels") or {}).items()]
    parts += [f"hardware {h}" for h in exclude.get("hardware", [])]
    parts += [f"board {b}" for b in exclude.get("boards", [])]
    parts += [f"device {d}" for d in exclude.get("devices", [])]
    return "; ".join(parts) or None


def _readable(rollout: dict[str, Any]) -> dict[str, Any]:
    selector = rollout.get("selector") or {}
    return rollout | {"targeting": targeting(selector), "excluding": excluding(selector)}


def _record(session: Session, rollout: dict[str, Any]) -> None:
    if session.printer.as_json:
        session.printer.data(rollout)
        return
    session.printer.record(_readable(rollout), _SHOW_KEYS)


def list_rollouts(session: Session, args: argparse.Namespace) -> None:
    rollouts = session.client.get("/rollouts", params={"state": args.state})
    if session.printer.as_json:
        session.printer.data(rollouts)
        return
    session.printer.table([_readable(r) for r in rollouts], _COLUMNS)


def show(session: Session, args: argparse.Namespace) -> None:
    rollout = session.client.get(f"/rollouts/{args.rollout}")
    devices = session.client.get(f"/rollouts/{args.rollout}/devices")
    if session.printer.as_json:
        session.printer.data(rollout | {"device_updates": devices})
        return
    session.printer.record(_readable(rollout), _SHOW_KEYS)
    if devices:
        session.printer.message("")
        session.printer.table(
            devices,
            columns(
                ("DEVICE", "device_id"),
                ("STAGE", "stage"),
                ("OUTCOME", "outcome"),
                ("REASON", "reason"),
                ("ADMITTED", "admitted_at"),
                ("FINISHED", "finished_at"),
            ),
        )


def _control(session: Session, rollout_id: int, action: str) -> None:
    rollout = session.client.call("POST", f"/rollouts/{rollout_id}/{action}")
    session.printer.record(rollout, ("id", "name", "state", "stage_label", "halt_reason"))


def pause(session: Session, args: argparse.Namespace) -> None:
    _control(session, args.rollout, "pause")


def resume(session: Session, args: argparse.Namespace) -> None:
    _control(session, args.rollout, "resume")


def abort(session: Session, args: argparse.Namespace) -> None:
    _control(session, args.rollout, "abort")


def progress_line(rollout: dict[str, Any]) -> str:
    counts = rollout.get("devices") or {}
    done = counts.get("succeeded", 0)
    failed = counts.get("failed", 0) + counts.get("timed_out", 0)
    total = sum(counts.values())
    return (
        f"rollout {rollout['id']} {rollout['name']}: {rollout['state']}, "
        f"{rollout['stage_label']}, {done}/{total} succeeded, {failed} failed "
        f"({rollout['failure_ratio']:.0%} of {rollout['failure_threshold']:.0%} allowed)"
    )


def wait(session: Session, args: argparse.Namespace) -> None:
    if args.interval <= 0:
        raise UsageError("--interval must be positive")
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    path = f"/rollouts/{args.rollout}"
    try:
        while True:
            rollout = session.client.get(path)
            session.progress.show(progress_line(rollout))
            if rollout["state"] in ("completed", "halted", "aborted"):
                break
            if deadline is not None and time.monotonic() > deadline:
                raise ServerError(
                    f"rollout {args.rollout} is still {rollout['state']} after {args.timeout:g} s",
                    hint="wait again, or look at it with fleetctl rollouts show",
                )
            time.sleep(args.interval)
    finally:
        session.progress.done()
    if session.printer.as_json:
        session.printer.data(rollout)
    if rollout["state"] == "halted":
        raise RolloutHalted(
            f"rollout {args.rollout} halted: {rollout['halt_reason']}",
            hint=f"inspect it with 'fleetctl rollouts show {args.rollout}', then "
            f"'fleetctl rollouts resume {args.rollout}' or 'abort {args.rollout}'",
        )
    if rollout["state"] == "aborted":
        raise RolloutHalted(f"rollout {args.rollout} was aborted")
    session.printer.message(f"rollout {args.rollout} completed")
