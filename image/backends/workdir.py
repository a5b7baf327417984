"""The output folder of a build: signals become exceptions, and only finished output appears.

A build writes into ``.NAME.partial`` beside its result and renames it at the end. Whatever
stops it (an exception, SIGINT, SIGTERM or SIGHUP turned into :class:`BuildInterrupted`) the
partial folder is unmounted and deleted; a build killed outright (SIGKILL) leaves it, and the
next run into the same folder unmounts and deletes it before it starts.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from image.backends.mounts import remove_tree
from image.errors import BuildInterrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into :class:`BuildInterrupted` while the block runs, so
    every ``finally`` (unmounting included) runs. Later signals are ignored until the block is
    left: a second Ctrl-C must not cut the clean-up short. Main thread only (a no-op elsewhere).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise BuildInterrupted(f"build interrupted by {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, interrupt) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def partial_output(target: Path) -> Iterator[Path]:
    """Yield the path ``.NAME.partial`` beside ``target`` (absent: the block creates it); rename
    it to ``target`` when the block succeeds, delete it (unmounting first) when it does not.
    Leftovers of an earlier run, the partial folder or the old result, are unmounted and
    deleted first."""
    target = target.resolve()
    partial = target.with_name(f".{target.name}.partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in (partial, target):
        remove_tree(stale)
    try:
        yield partial
        partial.rename(target)
    finally:
        remove_tree(partial)
