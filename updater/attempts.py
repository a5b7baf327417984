"""Install attempts that ended unexpectedly, counted across crashes and restarts.

An install step that dies of something no code path expects (out of memory on a hostile
chunk, a parser's recursion, the process killed) would otherwise be resumed from the saved
state at every start and die again. Each step before the reboot is counted *before* it runs
(Mender's rule: persist, then act) and uncounted when it ends normally or waits for the
network, so only steps that never came back stay counted. A step that made progress before
it died (a power cut mid-write: the progress file moved on) starts the count afresh, so
resumable interruptions never add up; one that dies at the same point ``limit`` times in a
row makes the engine give the version up and report it.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from fleetcore import redact
from fleetcore.atomic import atomic_write
from fleetcore.errors import FormatError
from fleetcore.persisted import LEGACY, dump, load
from updater.space import Reserve, write_through
from updater.state import UpdaterState

log = logging.getLogger(__name__)


class InstallAttempts:
    def __init__(
        self, path: Path, *, limit: int, work_dir: Path, reserve: Reserve | None = None
    ) -> None:
        self.path = path
        self.limit = limit
        self.work_dir = work_dir  # what an install step writes: its change is progress
        self.reserve = reserve  # a count that cannot be saved would never give a version up

    def _progress(self, state: UpdaterState) -> str:
        digest = hashlib.sha256(state.state.value.encode())
        try:
            for entry in sorted(self.work_dir.iterdir()):
                digest.update(entry.name.encode())
                if entry.is_file():
                    digest.update(entry.read_bytes() if entry.stat().st_size < 1 << 16 else b"")
                    digest.update(str(entry.stat().st_size).encode())
        except OSError:
            pass
        return digest.hexdigest()[:32]

    def _read(self) -> tuple[str | None, int, str, str]:
        try:
            doc = load(self.path.read_bytes(), current=LEGACY, what=str(self.path))
            return (
                str(doc["version"]),
                int(doc["count"]),
                str(doc.get("last_error", "")),
                str(doc.get("progress", "")),
            )
        except FileNotFoundError:
            return None, 0, "", ""
        except (OSError, FormatError, KeyError, TypeError, ValueError) as err:
            log.warning("install attempts: %s unreadable (%s); counting afresh", self.path, err)
            return None, 0, "", ""

    def _write(self, version: str, count: int, last_error: str, progress: str) -> None:
        if count <= 0:
            self.clear()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "version": version,
            "count": count,
            # Masked before it is cut: a cut secret could no longer be recognised.
            "last_error": redact.SECRETS.mask(last_error)[:500],
            "progress": progress,
        }
        data = dump(doc, current=LEGACY)
        write_through(self.reserve, lambda: atomic_write(self.path, data))

    def begin(self, state: UpdaterState) -> bool:
        """Count a step of ``state``'s install; False when the version is to be given up."""
        version, count, last_error, progress = self._read()
        target, now = str(state.target_version), self._progress(state)
        if version != target or progress != now:
            count, last_error = 0, ""
        if count >= self.limit:
            return False
        self._write(target, count + 1, last_error, now)
        return True

    def end(self, state: UpdaterState) -> None:
        """The step came back (done or waiting for the network): it does not count."""
        version, count, last_error, progress = self._read()
        if version == str(state.target_version):
            self._write(version, count - 1, last_error, progress)

    def failed(self, state: UpdaterState, reason: str) -> None:
        """The step raised something unexpected: it stays counted, with its reason."""
        version, count, _, progress = self._read()
        if version == str(state.target_version):
            self._write(version, count, reason, progress)

    def give_up_reason(self, state: UpdaterState) -> str:
        _, count, last_error, _ = self._read()
        return f"given up after {count} attempts that ended unexpectedly" + (
            f" (last: {last_error})" if last_error else ""
        )

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
