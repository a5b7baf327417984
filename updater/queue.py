"""The bounded on-disk queue of events waiting for the Overlord.

An append-only journal (one JSON event per line, fsynced) plus a small atomically replaced
cursor file: the next sequence number, the last one the Overlord acknowledged and the count
of events dropped. When more than ``max_items`` are pending the oldest are dropped and
counted; the count goes out as a ``telemetry-dropped`` event and in every heartbeat. Events
are flushed strictly in order.

A full /data never stops the agent and never loses an event it can still send: the cursor
is written through the updater's space reserve (:mod:`updater.space`); the journal, which
only grows, is not written below ``min_free_bytes`` (by default twice the reserve, so it
never eats what a released reserve gave back to the state) nor after a failed write, and
its events stay in memory until they are sent or the whole journal can be written again.
Only events held in memory alone are lost if the agent stops before sending them.

Both files are read across an A/B fallback (:mod:`fleetcore.persisted`): unknown fields are
ignored, and a cursor or journal in a newer major format sets both aside (their sequence
numbers belong together) so the queue starts afresh. Format 1.0 is written without a key,
as release 0.1.0 wrote it; a later journal format starts with a ``{"format": ...}`` line.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from fleetcore import redact, strictjson
from fleetcore.atomic import atomic_write, fsync_dir
from fleetcore.bounded import INT64_MAX
from fleetcore.errors import FormatError
from fleetcore.persisted import FORMAT_KEY, FileFormat, FormatTooNew, dump, load, set_aside
from fleetcore.version import Version
from fleetcore.wire import Event, EventKind
from updater.space import RESERVE_BYTES, Reserve, free_bytes, write_through

log = logging.getLogger(__name__)

JOURNAL = "events.jsonl"
CURSOR = "cursor.json"
FORMAT = FileFormat(1, 0)
_EVENT_FIELDS = frozenset(Event.model_fields)


class Cursor(BaseModel):
    model_config = ConfigDict(extra="ignore")

    next_seq: int = 1
    acked_seq: int = 0
    dropped_total: int = 0
    dropped_unreported: int = 0


class EventQueue:
    def __init__(
        self,
        directory: Path,
        *,
        max_items: int,
        reserve: Reserve | None = None,
        min_free_bytes: int = 2 * RESERVE_BYTES,
    ) -> None:
        self.dir = directory
        self.max_items = max_items
        self.reserve = reserve
        self.min_free_bytes = min_free_bytes
        # False while the journal on disk lacks some pending events (or ends in a torn
        # line): the next write then rewrites it whole instead of appending.
        self._journal_complete = True
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self.cursor = self._load_cursor()
            self._pending = self._load_journal()
        except FormatTooNew as err:
            log.error("event queue: %s; set aside, starting a new queue", err)
            for name in (CURSOR, JOURNAL):
                with contextlib.suppress(FileNotFoundError):
                    set_aside(self.dir / name)
            self.cursor = Cursor()
            self._pending = []

    @property
    def dropped_total(self) -> int:
        return self.cursor.dropped_total

    def _load_cursor(self) -> Cursor:
        try:
            raw = (self.dir / CURSOR).read_bytes()
        except FileNotFoundError:
            return Cursor()
        except OSError as err:
            log.warning("event queue cursor unreadable (%s); starting a new one", err.strerror)
            return Cursor()
        try:
            return Cursor.model_validate(load(raw, current=FORMAT, what="event queue cursor"))
        except FormatTooNew:
            raise
        except (FormatError, ValidationError) as err:
            # Named by type only: a validation error would quote the file's values.
            log.warning(
                "event queue cursor unreadable (%s); starting a new one", type(err).__name__
            )
            return Cursor()

    def _load_journal(self) -> list[Event]:
        events: list[Event] = []
        try:
            lines = (self.dir / JOURNAL).read_bytes().split(b"\n")
        except FileNotFoundError:
            return events
        for number, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                event = _parse_event(line, first=number == 0)
            except FormatTooNew:
                raise
            except FormatError:
                # Torn by a power cut, or queued by a release whose events this one does
                # not read: lost, and counted so the Overlord hears of it.
                log.warning("skipping a torn or corrupt queued event")
                self.cursor.dropped_total += 1
                self.cursor.dropped_unreported += 1
                if (seq := _raw_seq(line)) is not None:  # never reused for another event
                    self.cursor.next_seq = max(self.cursor.next_seq, seq + 1)
                continue
            if event is None:
                continue
            if event.seq > self.cursor.acked_seq:
                events.append(event)
            self.cursor.next_seq = max(self.cursor.next_seq, event.seq + 1)
        self._rewrite(events)
        return events

    def _rewrite(self, events: list[Event]) -> None:
        data = b"".join(e.model_dump_json().encode() + b"\n" for e in events)
        self._write_journal(lambda: atomic_write(self.dir / JOURNAL, data))

    def _append(self, event: Event) -> None:
        path = self.dir / JOURNAL

        def append() -> None:
            fresh = not path.exists()
            with path.open("ab") as handle:
                handle.write(event.model_dump_json().encode() + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            if fresh:
                fsync_dir(self.dir)

        self._write_journal(append)

    def _write_journal(self, write: Callable[[], None]) -> None:
        """Run a journal write unless /data is below the floor; failures are logged, and
        the events stay in memory until a later write of the whole journal succeeds."""
        free = free_bytes(self.dir)
        try:
            if free < self.min_free_bytes:
                raise OSError(errno.ENOSPC, f"{free} bytes free, below {self.min_free_bytes}")
            write()
        except OSError as err:
            if self._journal_complete:
                log.warning(
                    "event journal not saved (%s); events are kept in memory until sent",
                    err.strerror or err,
                )
            self._journal_complete = False
            return
        if not self._journal_complete:
            log.info("event journal saved again")
        self._journal_complete = True

    def _save_cursor(self) -> None:
        data = dump(self.cursor.model_dump(), current=FORMAT)
        try:
            write_through(self.reserve, lambda: atomic_write(self.dir / CURSOR, data))
        except OSError as err:
            # Only counters: the ones in memory go on and are saved with the next event.
            log.error("event queue cursor not saved: %s", err.strerror or err)

    def put(
        self,
        kind: EventKind,
        *,
        version: Version | None = None,
        message: str = "",
        reason: str | None = None,
        data: dict[str, str | int | float | bool | None] | None = None,
    ) -> Event:
        event = Event(
            seq=self.cursor.next_seq,
            time=datetime.now(UTC),
            kind=kind,
            version=version,
            # Masked before they are cut (a cut secret is no longer recognised): events
            # carry error text, and the Overlord shows them.
            message=redact.SECRETS.mask(message)[:4096],
            reason=redact.SECRETS.mask(reason)[:4096] if reason else None,
            data=data or {},
        )
        self.cursor.next_seq += 1
        self._pending.append(event)
        if len(self._pending) > self.max_items:
            overflow = len(self._pending) - self.max_items
            del self._pending[:overflow]
            self.cursor.dropped_total += overflow
            self.cursor.dropped_unreported += overflow
            self._rewrite(self._pending)
        elif self._journal_complete:
            self._append(event)
        else:
            self._rewrite(self._pending)
        self._save_cursor()
        return event

    def pending(self, limit: int = 1000) -> list[Event]:
        """The oldest unacknowledged events, in order, a ``telemetry-dropped`` notice first.

        The notice takes the sequence number of the last dropped event, so the stream stays
        strictly increasing and acknowledging a prefix never skips an unsent event; with
        nothing else pending (the one refused event was the last) it takes a new number.
        """
        if self.cursor.dropped_unreported:
            count = self.cursor.dropped_unreported
            if self._pending:
                seq = self._pending[0].seq - 1
            else:
                seq = self.cursor.next_seq
                self.cursor.next_seq += 1
            notice = Event(
                seq=seq,
                time=datetime.now(UTC),
                kind=EventKind.TELEMETRY_DROPPED,
                message=f"{count} queued events were dropped (queue full, or refused by the"
                " Overlord)",
                data={"dropped": count, "dropped_total": self.cursor.dropped_total},
            )
            self._pending.insert(0, notice)
            self.cursor.dropped_unreported = 0
            self._rewrite(self._pending)
            self._save_cursor()
        return self._pending[:limit]

    def ack(self, last_seq: int) -> None:
        """Forget every event up to and including ``last_seq``."""
        self._pending = [e for e in self._pending if e.seq > last_seq]
        self.cursor.acked_seq = max(self.cursor.acked_seq, last_seq)
        self._save_cursor()
        self._rewrite(self._pending)

    def drop_refused(self, event: Event) -> None:
        """Forget the oldest pending event, which the Overlord refuses for good.

        It is counted as dropped (the next ``telemetry-dropped`` notice and every heartbeat
        say so), except a refused notice itself: counting it would only make another.
        """
        if not self._pending or self._pending[0].seq != event.seq:
            raise ValueError(f"event {event.seq} is not the oldest pending one")
        if event.kind is not EventKind.TELEMETRY_DROPPED:
            self.cursor.dropped_total += 1
            self.cursor.dropped_unreported += 1
        self.ack(event.seq)

    def __len__(self) -> int:
        return len(self._pending)


def _parse_event(line: bytes, *, first: bool) -> Event | None:
    """One journal line as an event; ``None`` for the format line.

    Raises :class:`FormatTooNew` for a first line naming a newer major format and
    :class:`FormatError` for a torn or corrupt line.
    """
    doc = strictjson.loads(line, what="queued event")
    if not isinstance(doc, dict):
        raise FormatError("queued event is not a JSON object")
    if first and set(doc) == {FORMAT_KEY}:
        load(line, current=FORMAT, what="event journal")
        return None
    try:
        return Event.model_validate({k: v for k, v in doc.items() if k in _EVENT_FIELDS})
    except ValidationError as err:
        raise FormatError("queued event does not validate") from err


def _raw_seq(line: bytes) -> int | None:
    """The sequence number of a journal line that is not a readable event, if it has one."""
    try:
        doc = strictjson.loads(line, what="queued event")
    except FormatError:
        return None
    seq = doc.get("seq") if isinstance(doc, dict) else None
    if isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq <= INT64_MAX:
        return seq
    return None
