"""Boot a card image by hand: ``cd qemu-tests && python -m harness CARD.img``.

For whoever builds the image: it plays the firmware over as many boots as asked, prints one
decision line per boot and leaves the serial console in the work directory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from fleetcore.cli import run_main, setup_logging
from harness.board import Deadlines, SimulatedPi
from harness.errors import HarnessError


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    parser.add_argument("card", type=Path, help="raw disk image (booted in place, it is written)")
    parser.add_argument("--healthy-marker", required=True, help="console text of a healthy boot")
    parser.add_argument("--boots", type=int, default=1, help="boots to run (default 1)")
    parser.add_argument("--watchdog", type=float, default=Deadlines.watchdog, help="seconds")
    parser.add_argument("--session", type=float, default=Deadlines.session, help="seconds")
    parser.add_argument("--workdir", type=Path, help="where console.log goes (default: a temp dir)")
    parser.add_argument(
        "--customer-key",
        type=Path,
        help="PEM RSA-2048 public key: play a bootloader in signed-boot mode (boot.img + boot.sig)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging(args.verbose)

    def body() -> int:
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="simulated-pi-"))
        key = _read(args.customer_key) if args.customer_key is not None else None
        pi = SimulatedPi(
            args.card,
            workdir,
            healthy_marker=args.healthy_marker,
            deadlines=Deadlines(watchdog=args.watchdog, session=args.session),
            customer_key=key,
        )
        print(f"serial console: {pi.console_log}")
        for _ in range(args.boots):
            print(pi.boot().line(), flush=True)
        return 0 if any(r.healthy for r in pi.records) else 1

    return run_main("python -m harness", body)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise HarnessError(f"cannot read the customer key {path}: {err.strerror}") from err


if __name__ == "__main__":
    sys.exit(main())
