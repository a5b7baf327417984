"""CLI plumbing shared by the console scripts: logging set-up and error-to-exit-code."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from fleetcore import logs
from fleetcore.errors import FleetError

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def setup_logging(verbose: int) -> None:
    """Log to stderr: warnings by default, info with -v, debug (commands run) with -vv.

    JSON lines instead of text with ``FLEET_LOG_FORMAT=json`` (:mod:`fleetcore.logs`).
    """
    logs.configure(logging.WARNING - 10 * min(verbose, 2))


def run_main(prog: str, body: Callable[[], int | None]) -> int:
    """Run a CLI body; expected failures become one line on stderr and exit code 1."""
    try:
        return body() or 0
    except FleetError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        if err.hint:
            print(f"{prog}: hint: {err.hint}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
