"""A bounded live tail of the systemd journal, read by a child process and one thread.

``journalctl -f -o json`` runs as a child; one daemon thread reads its stdout line by line
into a bounded buffer, so neither a chatty journal nor a slow network can grow the agent's
memory or block its update loop. When the buffer is full the oldest entries are dropped and
counted; the reader hands the count on with the next batch. Each entry is cut down to the
fields an operator reads, and ``MESSAGE`` to :data:`MAX_MESSAGE_BYTES`.
"""

from __future__ import annotations

import collections
import json
import subprocess
import threading
from dataclasses import dataclass, field
from typing import IO, Any

PRIORITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
FIELDS = ("__REALTIME_TIMESTAMP", "PRIORITY", "_SYSTEMD_UNIT", "SYSLOG_IDENTIFIER", "_PID")
MAX_LINE_BYTES = 64 * 1024
MAX_MESSAGE_BYTES = 16 * 1024
DEFAULT_LINES = 100
BUFFER_ENTRIES = 1000


@dataclass(frozen=True)
class TailRequest:
    """What the operator asked for: a unit, the least urgent priority, past lines first."""

    unit: str | None = None
    priority: str | None = None
    lines: int = DEFAULT_LINES

    def command(self, journalctl: str = "journalctl") -> list[str]:
        # Arguments are passed as a list (no shell); the Overlord has already checked the
        # unit's form, and "--unit=" keeps a value from being read as an option.
        command = [journalctl, "--follow", "--output=json", f"--lines={self.lines}"]
        if self.unit is not None:
            command.append(f"--unit={self.unit}")
        if self.priority is not None:
            if self.priority not in PRIORITIES:
                raise ValueError(f"unknown journal priority {self.priority!r}")
            command.append(f"--priority={self.priority}")
        return command


@dataclass
class Batch:
    """Entries read since the last batch and how many were dropped before them."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    dropped: int = 0
    finished: bool = False


def entry_of(line: bytes) -> dict[str, Any] | None:
    """The fields an operator reads from one line of ``journalctl -o json``, or None for a
    line that is not a JSON object (cut off, or not from journalctl)."""
    try:
        raw = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(raw, dict):
        return None
    entry = {name: raw[name] for name in FIELDS if isinstance(raw.get(name), str)}
    entry["MESSAGE"] = _message(raw.get("MESSAGE"))
    return entry


def _message(value: object) -> str:
    # journalctl prints a message that is not valid UTF-8 as an array of byte values.
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        data = bytes(value)
    elif isinstance(value, str):
        data = value.encode("utf-8", "replace")
    else:
        data = b""
    return data[:MAX_MESSAGE_BYTES].decode("utf-8", "replace")


class JournalTail:
    """One running tail; :meth:`read` takes what arrived, :meth:`close` stops the child."""

    def __init__(
        self,
        request: TailRequest,
        *,
        journalctl: str = "journalctl",
        buffer_entries: int = BUFFER_ENTRIES,
    ) -> None:
        self._buffer: collections.deque[dict[str, Any]] = collections.deque()
        self._limit = buffer_entries
        self._dropped = 0
        self._finished = False
        self._ready = threading.Condition()
        self._child = subprocess.Popen(
            request.command(journalctl),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self._child.stdout is not None
        self._reader = threading.Thread(
            target=self._read_lines, args=(self._child.stdout,), daemon=True, name="journal"
        )
        self._reader.start()

    def _read_lines(self, stdout: IO[bytes]) -> None:
        skipping = False
        while line := stdout.readline(MAX_LINE_BYTES):
            complete = line.endswith(b"\n")
            # A line longer than the limit is skipped whole, to its newline, and counted.
            entry = None if skipping or not complete else entry_of(line)
            with self._ready:
                if entry is None:
                    # Counted once per line: the rest of an overlong one is not counted again.
                    self._dropped += 0 if skipping else 1
                else:
                    if len(self._buffer) >= self._limit:
                        self._buffer.popleft()
                        self._dropped += 1
                    self._buffer.append(entry)
                self._ready.notify_all()
            skipping = not complete
        with self._ready:
            self._finished = True
            self._ready.notify_all()

    def read(self, timeout_s: float) -> Batch:
        """What arrived, waiting up to ``timeout_s`` for something when nothing has."""
        with self._ready:
            if not self._buffer and not self._dropped and not self._finished:
                self._ready.wait(timeout_s)
            batch = Batch(list(self._buffer), self._dropped, self._finished and not self._buffer)
            self._buffer.clear()
            self._dropped = 0
            return batch

    def close(self) -> None:
        """Stops journalctl and waits for the reader; safe to call twice."""
        if self._child.poll() is None:
            self._child.terminate()
            try:
                self._child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._child.kill()
                self._child.wait()
        self._reader.join(timeout=5)
        if self._child.stdout is not None:
            self._child.stdout.close()

    def __enter__(self) -> JournalTail:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
