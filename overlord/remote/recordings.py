"""Shell recordings (ADR 0074, shell slice): written while the session runs, read by admins,
pruned after the retention period.

The replica that holds the device's socket records: what the device printed as it arrives,
what the operator typed and each resize as they go to the device, so one clock orders them
whichever replica the operator is on. A :class:`Tape` keeps the lines not yet stored and
writes them as one numbered piece every second, or sooner once
:data:`FLUSH_BYTES` are waiting (the writer waits for the database: backpressure). A
recording that cannot be stored, or that passes its size limit, ends the session: nothing
runs unrecorded.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from overlord.audit import service as audit
from overlord.audit.models import AuditAction, AuditObject
from overlord.audit.service import Actor
from overlord.db import unit_of_work, utcnow
from overlord.errors import NotFound
from overlord.remote import frames
from overlord.remote.asciicast import Header, Recorder
from overlord.remote.models import RecordingPiece, RemoteSession, SessionKind

FLUSH_BYTES = 256 * 1024
TERM = "xterm-256color"
WIDTH, HEIGHT = 80, 24  # the device's PTY starts at this size; resizes follow as events


class RecordingFailed(frames.FrameError):
    """The recording cannot go on (too large, or not stored): the session ends with it."""


class Tape:
    """The recording of one shell session while it runs."""

    def __init__(self, sessions: sessionmaker[Session], row: RemoteSession, max_bytes: int) -> None:
        self._sessions = sessions
        self._session_id = row.id
        self._max_bytes = max_bytes
        self._recorder = Recorder(time.monotonic())
        title = f"shell on {row.device_id}, session {row.id}, opened by {row.opened_by}"
        header = Header(WIDTH, HEIGHT, int(time.time()), title, {"TERM": TERM})
        self._lines = [header.line()]
        self._waiting = len(self._lines[0])
        self._stored = 0
        self._seq = 0

    async def printed(self, data: bytes) -> None:
        await self._add(self._recorder.terminal("o", data, time.monotonic()))

    async def typed(self, data: bytes) -> None:
        await self._add(self._recorder.terminal("i", data, time.monotonic()))

    async def control(self, text: str) -> None:
        """Records a resize on its way to the device (checked by the operator's replica as it
        came in); other control frames are not kept."""
        message = json.loads(text)
        if message.get("type") == "resize":
            cols, rows = message["cols"], message["rows"]
            await self._add(self._recorder.resize(cols, rows, time.monotonic()))

    async def _add(self, line: str) -> None:
        if not line:
            return
        # Checked first: a frame the recording cannot take is neither kept nor relayed.
        if self._stored + self._waiting + len(line) > self._max_bytes:
            raise RecordingFailed(f"the recording reached its limit of {self._max_bytes} bytes")
        self._lines.append(line)
        self._waiting += len(line)
        if self._waiting >= FLUSH_BYTES:
            await self.flush()

    async def flush(self) -> None:
        """Stores what is waiting as the next piece."""
        if not self._lines:
            return
        # Taken before the write: a flush cancelled mid-write never reuses its number.
        data, self._lines, self._seq = "".join(self._lines), [], self._seq + 1
        self._stored, self._waiting = self._stored + self._waiting, 0
        try:
            await run_in_threadpool(self._write, self._seq - 1, data)
        except SQLAlchemyError as err:
            detail = type(err).__name__
            raise RecordingFailed(f"the recording could not be stored: {detail}") from err

    def _write(self, seq: int, data: str) -> None:
        with unit_of_work(self._sessions) as session:
            session.add(RecordingPiece(session_id=self._session_id, seq=seq, data=data))


def read(session: Session, actor: Actor, session_id: str) -> str:
    """A shell session's recording (so far, while it runs); reading it is audited."""
    row = session.get(RemoteSession, session_id)
    if row is None:
        raise NotFound(f"no remote session {session_id}")
    if row.kind is not SessionKind.SHELL:
        raise NotFound(
            f"remote session {session_id} is a {row.kind.value} session: only shells are recorded"
        )
    query = select(RecordingPiece.data).where(RecordingPiece.session_id == session_id)
    pieces = list(session.scalars(query.order_by(RecordingPiece.seq)))
    if not pieces:
        raise NotFound(
            f"no recording of remote session {session_id}: the device never joined, "
            "or the recording is past its retention period"
        )
    audit.record(
        session,
        actor,
        AuditAction.REMOTE_RECORDING,
        object_type=AuditObject.DEVICE,
        object_id=row.device_id,
        after={"session": row.id},
    )
    return "".join(pieces)


def prune(session: Session, *, retention_days: int) -> int:
    """Deletes the recordings of sessions that ended more than ``retention_days`` ago;
    returns how many pieces went."""
    cutoff = utcnow() - timedelta(days=retention_days)
    old = select(RemoteSession.id).where(RemoteSession.ended_at < cutoff)
    result = session.execute(delete(RecordingPiece).where(RecordingPiece.session_id.in_(old)))
    return int(getattr(result, "rowcount", 0) or 0)
