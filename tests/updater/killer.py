"""Run the updater on a simulated device and SIGKILL it once it has fetched N more bytes.

``python -m tests.updater.killer DEVICE_DIR KILL_AFTER_BYTES``: a kill -9 at an arbitrary
point of an install, with no ``finally`` blocks or atexit handlers running, like a crash.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.updater.device import SimDevice
from updater.chunks import ChunkSource
from updater.engine import Engine
from updater.sources import ReleaseSource


class KillingSource(ChunkSource):
    def __init__(self, inner: ChunkSource, kill_after: int) -> None:
        super().__init__()
        self.inner = inner
        self.kill_after = kill_after

    def _fetch_many(self, wanted: list[tuple[str, int]]) -> Iterator[bytes]:
        for one in wanted:
            if self.fetched_bytes >= self.kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            yield from self.inner._fetch_many([one])

    def close(self) -> None:
        self.inner.close()


def main() -> None:
    device = SimDevice.at(Path(sys.argv[1]))
    kill_after = int(sys.argv[2])
    engine = device.engine()
    opener = engine._open

    def killing_open(source: str) -> ReleaseSource:
        opened = opener(source)
        return ReleaseSource(opened.reader, KillingSource(opened.chunks, kill_after))

    Engine._open = lambda self, source: killing_open(source)  # type: ignore[method-assign]
    engine.resume()


if __name__ == "__main__":
    main()
