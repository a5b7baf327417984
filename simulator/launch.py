"""The ``fleet-demo`` console script: every entry point is installed whatever the extras, so
this one says which extra is missing instead of failing on an import deep in the builder."""

from __future__ import annotations

import sys

from fleetcore.cli import EXIT_FAILURE

PROG = "fleet-demo"


def demo() -> int:
    try:
        from simulator.demo import cli  # deferred: needs the [demo] extra (Overlord + builder)
    except ImportError as err:
        print(f"{PROG}: error: {err.name or err} is not installed", file=sys.stderr)
        print(f"{PROG}: hint: pip install 'metrica-fleet[demo]'", file=sys.stderr)
        return EXIT_FAILURE
    return cli()
