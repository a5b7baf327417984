"""``fleetctl``: parse the command line, run one command, turn failures into one line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fleetcore.cli import EXIT_USAGE, run_main
from fleetctl.commands import (
    audit,
    config,
    devices,
    forward,
    global_options,
    groups,
    login,
    logs,
    releases,
    rollouts,
    shell,
    tokens,
)
from fleetctl.errors import UsageError
from fleetctl.output import Printer
from fleetctl.session import Session

PROG = "fleetctl"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Operate a Metrica Fleet Overlord over its HTTP API.",
        parents=[global_options(defaults=True)],
    )
    sub = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    for module in (
        login,
        devices,
        logs,
        shell,
        forward,
        groups,
        config,
        releases,
        rollouts,
        tokens,
        audit,
    ):
        module.add(sub)
    return parser


def _run(argv: Sequence[str] | None) -> int | None:
    args = build_parser().parse_args(argv)
    session = Session(args=args, printer=Printer(as_json=args.json))
    try:
        return args.func(session, args)  # type: ignore[no-any-return]
    except UsageError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        if err.hint:
            print(f"{PROG}: hint: {err.hint}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        session.close()


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, lambda: _run(argv))
