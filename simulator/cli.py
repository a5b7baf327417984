"""``fleet-demo``: the README's main job as its own command (extra ``demo``).

It sits above every other component (it assembles releases with the image builder, runs the
real updater in threads and serves the Overlord), so it is not a subcommand of ``overlord``:
an ``[overlord]`` install never imports the builder or pyfastcdc. Every console script is
installed whatever the extras, so without ``[demo]`` this one names the missing extra instead
of failing on an import deep in the builder.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from fleetcore.cli import EXIT_FAILURE, run_main, setup_logging

PROG = "fleet-demo"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        from simulator.demo import main as demo_main  # needs [demo]: the Overlord and builder
    except ImportError as err:
        print(f"{PROG}: error: {err.name or err} is not installed", file=sys.stderr)
        print(f"{PROG}: hint: pip install 'metrica-fleet[demo]'", file=sys.stderr)
        return EXIT_FAILURE
    setup_logging(0)
    return run_main(PROG, lambda: demo_main(args))
