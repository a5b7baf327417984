"""``fleet-demo``: the README's main job as its own command (extra ``demo``).

It sits above every other component (it assembles releases with the image builder, runs the
real updater in threads and serves the Overlord), so it is not a subcommand of ``overlord``:
an ``[overlord]`` install never imports the builder or pyfastcdc.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from fleetcore.cli import run_main, setup_logging
from simulator.demo import PROG
from simulator.demo import main as demo_main


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    setup_logging(0)
    return run_main(PROG, lambda: demo_main(args))
