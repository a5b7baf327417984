"""Progress lines for long steps: stderr, one line per step, elapsed time when it ends."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator


@contextlib.contextmanager
def step(what: str) -> Iterator[None]:
    """Announce a long step and report how long it took."""
    print(f"fleet-image: {what} ...", file=sys.stderr, flush=True)
    start = time.monotonic()
    yield
    print(
        f"fleet-image: {what}: done in {time.monotonic() - start:.1f} s",
        file=sys.stderr,
        flush=True,
    )


class Bar:
    """A byte-count progress bar that redraws one stderr line, at most once per percent."""

    def __init__(self, what: str, total: int) -> None:
        self.what = what
        self.total = max(total, 1)
        self.done = 0
        self._shown = -1

    def advance(self, count: int) -> None:
        self.done += count
        percent = min(100, self.done * 100 // self.total)
        if percent != self._shown:
            self._shown = percent
            filled = percent // 4
            bar = "#" * filled + "." * (25 - filled)
            mib = self.done / 2**20
            end = "\n" if percent == 100 else ""
            print(
                f"\r{self.what} [{bar}] {percent:3d}% {mib:8.1f} MiB",
                end=end,
                file=sys.stderr,
                flush=True,
            )
