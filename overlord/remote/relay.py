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

from overlord.remote import frames

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


class Hub:
    """The mailboxes of the sessions this replica holds a socket of."""

    def __init__(self) -> None:
        self._boxes: dict[tuple[str, Side], Mailbox] = {}

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
        other = Side.OPERATOR if side is Side.DEVICE else Side.DEVICE
        return self._boxes.get((session_id, other))

    async def send(self, session_id: str, side: Side, frame: Frame) -> None:
        """Relays a frame from ``side`` to its peer; without a peer here it is not kept."""
        box = self.peer(session_id, side)
        if box is not None:
            await box.put(frame)

    def end(self, session_id: str, last: str) -> None:
        """Tells both sides' sockets to send ``last`` (the end's reason) and close."""
        for side in Side:
            box = self._boxes.get((session_id, side))
            if box is not None:
                box.close(last)
