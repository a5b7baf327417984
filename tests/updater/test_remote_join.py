"""The agent's session thread (ADR 0074) on the device's Python, against a real WebSocket
peer (a ``wsproto`` server on loopback standing in for the Overlord, which needs the server's
environment): ``hello`` first, the journal's entries as binary frames, the end when the peer
sends ``close``; a ``dropped`` count for entries the reader lost; the ``fleet.yaml`` veto's
``close`` with its reason; a refused upgrade."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    RejectConnection,
    Request,
    TextMessage,
)

from fleetcore.firstboot import RemoteAccess
from fleetcore.wire import DesiredRemote
from tests.updater.test_remote_journal import FIXTURES, fake_journal  # noqa: F401 (fixture)
from tests.updater.wspieces import Pieces
from updater.remote.join import Join
from updater.remote.journal import MAX_LINE_BYTES, entry_of

SESSION = DesiredRemote(session="s" * 22, kind="logs", unit="nginx.service")


class Peer:
    """One WebSocket connection served on loopback; records what the client sent."""

    def __init__(self, *, accept: bool = True, close_after: int = 0) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accept, self.close_after = accept, close_after
        self.target = ""
        self.headers: dict[bytes, bytes] = {}
        self.received: list[str | bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(30)
        ws = WSConnection(ConnectionType.SERVER)
        pieces = Pieces()
        with conn:
            while True:
                data = conn.recv(65536)
                ws.receive_data(data or None)
                for event in ws.events():
                    if isinstance(event, Request):
                        self.target, self.headers = event.target, dict(event.extra_headers)
                        if not self.accept:
                            conn.sendall(ws.send(RejectConnection(status_code=403)))
                            return
                        conn.sendall(ws.send(AcceptConnection()))
                    elif isinstance(event, TextMessage | BytesMessage):
                        message = pieces.add(event)
                        if message is None:
                            continue
                        self.received.append(message)
                        payloads = [m for m in self.received if isinstance(m, bytes)]
                        last = isinstance(message, bytes) and len(payloads) == self.close_after
                        if self.close_after and last:
                            close = json.dumps({"type": "close", "reason": "seen enough"})
                            conn.sendall(ws.send(TextMessage(data=close)))
                    elif isinstance(event, CloseConnection):
                        conn.sendall(ws.send(event.response()))
                        return
                if not data:
                    return

    def url(self) -> httpx.URL:
        return httpx.URL(f"http://127.0.0.1:{self.port}/api/v1/devices/d1/remote/{SESSION.session}")


@pytest.fixture
def journal_lines(fake_journal: Path) -> Iterator[list[object]]:  # noqa: F811
    lines = (FIXTURES / "good.jsonl").read_bytes().splitlines(keepends=True)
    yield [entry_of(line) for line in lines]


def _run(peer: Peer, access: RemoteAccess) -> Join:
    join = Join(
        SESSION,
        url=peer.url(),
        headers={"Authorization": "Bearer device-token"},
        access=access,
        version="1.0.0",
    )
    join.start()
    peer.thread.join(timeout=60)
    for _ in range(600):  # the thread ends on its own once the peer is gone
        if not join.running:
            break
        time.sleep(0.05)
    return join


def test_the_thread_serves_the_journal_until_the_peer_closes(journal_lines: list[object]):
    peer = Peer(close_after=len(journal_lines))
    join = _run(peer, RemoteAccess())
    assert not join.running and not peer.thread.is_alive()
    assert peer.target == f"/api/v1/devices/d1/remote/{SESSION.session}"
    assert peer.headers[b"authorization"] == b"Bearer device-token"
    hello, *lines = peer.received
    assert json.loads(hello) == {"type": "hello", "session": SESSION.session, "version": "1.0.0"}
    assert [json.loads(line) for line in lines] == journal_lines


def test_the_veto_closes_with_its_reason(journal_lines: list[object]):
    peer = Peer()
    join = _run(peer, RemoteAccess(logs=False))
    assert not join.running
    assert [json.loads(message)["type"] for message in peer.received] == ["hello", "close"]
    assert "fleet.yaml forbids logs" in json.loads(peer.received[1])["reason"]


def test_a_refused_upgrade_ends_the_thread_quietly():
    peer = Peer(accept=False)
    join = _run(peer, RemoteAccess())
    assert not join.running and peer.received == []


def test_entries_the_reader_lost_are_counted_to_the_operator(
    journal_lines: list[object], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("FAKE_JOURNAL_BIG", str(MAX_LINE_BYTES + 1))  # skipped whole, counted
    peer = Peer(close_after=len(journal_lines))
    _run(peer, RemoteAccess())
    controls = [json.loads(m)["type"] for m in peer.received if isinstance(m, str)]
    assert controls[:2] == ["hello", "dropped"]
    dropped = json.loads(peer.received[1])
    assert dropped == {"type": "dropped", "count": 1}
    assert [json.loads(m) for m in peer.received if isinstance(m, bytes)] == journal_lines
