"""The in-process relay between a session's two sockets on one replica (ADR 0074).

Each side of a session has a bounded queue (:data:`QUEUE_FRAMES`) of frames for it. A log
tail drops the oldest frame for a slow reader and counts it, and the reader gets a
``dropped`` control frame before its next frame; other kinds never drop: the writer waits
for room, so backpressure reaches the other socket.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import StrEnum

from anyio import from_thread
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from overlord.remote import frames
from overlord.remote.pgrelay import PgRelay, Relayed

QUEUE_FRAMES = 64
Frame = str | bytes
END = None  # the frame that tells a side its session is over


class Side(StrEnum):
    DEVICE = "device"
    OPERATOR = "operator"


@dataclass
class Mailbox:
    """The frames waiting for one side's socket."""

    lossy: bool
    queue: asyncio.Queue[Frame | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_FRAMES))
    dropped: int = 0

    async def put(self, frame: Frame) -> None:
        if self.lossy and self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        await self.queue.put(frame)

    def offer(self, frame: Frame) -> bool:
        """Queues a relayed frame without waiting; False when a lossless mailbox is full."""
        if self.lossy and self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        if self.queue.full():
            return False
        self.queue.put_nowait(frame)
        return True

    def close(self, last: str) -> None:
        """Queues ``last`` and the end, making room if it must: the session is over."""
        while self.queue.qsize() > QUEUE_FRAMES - 2:
            self.queue.get_nowait()
        self.queue.put_nowait(last)
        self.queue.put_nowait(END)

    async def take(self) -> Frame | None:
        """The next frame for the socket, after a ``dropped`` notice if any were lost."""
        if self.dropped:
            count, self.dropped = self.dropped, 0
            return frames.text("dropped", count=count)
        return await self.queue.get()


RELAY_FULL = frames.text("error", reason="the relay between replicas fell behind")


class Hub:
    """The mailboxes of the sessions this replica holds a socket of.

    With a :class:`PgRelay` (PostgreSQL), a frame whose peer is not here is published for
    the replica that holds it, and :meth:`relayed` takes the frames other replicas publish.
    """

    def __init__(self) -> None:
        self._boxes: dict[tuple[str, Side], Mailbox] = {}
        self.relay: PgRelay | None = None

    def open(self, session_id: str, side: Side, *, lossy: bool) -> Mailbox:
        """The mailbox of ``side``; one per side (a second socket for it is refused)."""
        if (session_id, side) in self._boxes:
            raise frames.FrameError(f"the session's {side.value} is already connected")
        box = self._boxes[(session_id, side)] = Mailbox(lossy=lossy and side is Side.OPERATOR)
        return box

    def release(self, session_id: str, side: Side) -> None:
        self._boxes.pop((session_id, side), None)

    def peer(self, session_id: str, side: Side) -> Mailbox | None:
        """The mailbox of the other side, if it is connected here."""
        return self._boxes.get((session_id, _other(side)))

    async def send(self, session_id: str, side: Side, frame: Frame) -> None:
        """Relays a frame from ``side`` to its peer, here or on another replica (with a
        relay); a frame nobody holds the peer of is not kept."""
        box = self.peer(session_id, side)
        if box is not None:
            await box.put(frame)
        elif self.relay is not None:
            kind, data = ("b", frame) if isinstance(frame, bytes) else ("t", frame.encode())
            await run_in_threadpool(self.relay.publish, session_id, _other(side), kind, data)

    async def end(self, session_id: str, last: str, ending: Side) -> None:
        """Tells the sockets of the session, here or on another replica, to send ``last``
        (the end's reason) and close; ``ending`` is the side whose socket ended it."""
        for side in Side:
            box = self._boxes.get((session_id, side))
            if box is not None:
                box.close(last)
            elif self.relay is not None and side is not ending:
                await run_in_threadpool(self.relay.publish, session_id, side, "e", last.encode())

    def end_everywhere(self, session_id: str, last: str) -> None:
        """From a worker thread (an admin's ``DELETE``): both sockets of the session, on
        whichever replicas hold them, send ``last`` and close. With a relay the end goes
        through ``NOTIFY`` to every replica, this one included."""
        if self.relay is None:
            from_thread.run_sync(self._end_here, session_id, last)
            return
        for side in Side:
            self.relay.publish(session_id, side, "e", last.encode())

    def _end_here(self, session_id: str, last: str) -> None:
        for side in Side:
            box = self._boxes.get((session_id, side))
            if box is not None:
                box.close(last)

    def relayed(self, frame: Relayed) -> None:
        """A frame another replica published: for a socket here, or ignored."""
        box = self._boxes.get((frame.session_id, Side(frame.side)))
        if box is None:
            return
        if frame.kind == "e":
            box.close(frame.data.decode())
        elif not box.offer(frame.data if frame.kind == "b" else frame.data.decode()):
            box.close(RELAY_FULL)


def _other(side: Side) -> Side:
    return Side.OPERATOR if side is Side.DEVICE else Side.DEVICE


def start_relay(hub: Hub, engine: Engine) -> PgRelay | None:
    """Starts the cross-replica relay for ``hub`` on PostgreSQL (SQLite: in-process only)."""
    if engine.dialect.name != "postgresql":
        return None
    hub.relay = PgRelay(engine, asyncio.get_running_loop(), hub.relayed)
    hub.relay.start()
    return hub.relay
