"""The agent's port forward (ADR 0074, forwarding slice) on the device's Python, against a
real WebSocket peer standing in for the Overlord and a real HTTP server on loopback: several
streams at once carry whole responses, a large body arrives intact, a refused connection is
an error for its stream while the session lives on, the stream bound holds, and the
``fleet.yaml`` veto refuses the session."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from fleetcore import streams
from fleetcore.firstboot import RemoteAccess
from fleetcore.wire import DesiredRemote
from tests.updater.test_remote_shell import SESSION, Peer, _ended
from tests.webpages import BIG, page, serve_pages
from updater.remote.forward import connect_local
from updater.remote.join import Join

ALLOWED = RemoteAccess(forward=True)


@pytest.fixture
def web() -> Iterator[int]:
    with serve_pages() as port:
        yield port


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _join(peer: Peer, port: int, access: RemoteAccess = ALLOWED) -> Join:
    join = Join(
        DesiredRemote(session=SESSION.session, kind="forward", port=port),
        url=peer.url(),
        headers={"Authorization": "Bearer device-token"},
        access=access,
        version="1.0.0",
    )
    join.start()
    assert peer.hello()["type"] == "hello"
    return join


def _stream_data(peer: Peer, number: int) -> bytes:
    frames = (streams.unpack(m) for m in peer.received if isinstance(m, bytes))
    return b"".join(data for stream, data in frames if stream == number)


def _ended_streams(peer: Peer) -> dict[int, dict[str, object]]:
    return {
        int(c["stream"]): c  # type: ignore[call-overload]
        for c in peer.controls()
        if c["type"] in (streams.CLOSE, streams.ERROR)
    }


def _get(peer: Peer, number: int, path: str) -> None:
    peer.send(streams.control(streams.OPEN, number))
    request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    peer.send(streams.pack(number, request))


def _stop(peer: Peer, join: Join) -> None:
    peer.send(json.dumps({"type": "close", "reason": "done"}))
    _ended(join)


def test_several_streams_carry_whole_responses_at_once(web: int):
    peer = Peer()
    join = _join(peer, web)
    peer.until(lambda: {"type": "ready"} in peer.controls(), "the agent was ready")
    for number in (1, 2, 3):
        _get(peer, number, "/big" if number == 2 else f"/p{number}")
    peer.until(lambda: len(_ended_streams(peer)) == 3, "every stream closed")
    assert _stream_data(peer, 1).endswith(b"\r\n\r\n" + page("/p1"))
    assert _stream_data(peer, 3).endswith(b"\r\n\r\n" + page("/p3"))
    assert _stream_data(peer, 2).split(b"\r\n\r\n", 1)[1] == BIG
    assert all(c["type"] == streams.CLOSE for c in _ended_streams(peer).values())
    _stop(peer, join)


def test_a_refused_connection_is_an_error_for_its_stream_and_the_session_lives_on():
    peer = Peer()
    join = _join(peer, _closed_port())
    peer.until(lambda: {"type": "ready"} in peer.controls(), "the agent was ready")
    for number in (1, 2):
        peer.send(streams.control(streams.OPEN, number))
        peer.until(lambda n=number: n in _ended_streams(peer), f"stream {number} failed")
    errors = _ended_streams(peer)
    assert errors[1]["type"] == streams.ERROR
    assert "cannot connect to port" in str(errors[1]["reason"])
    assert join.running
    _stop(peer, join)


def test_the_stream_bound_refuses_one_stream_more(web: int):
    peer = Peer()
    join = _join(peer, web)
    peer.until(lambda: {"type": "ready"} in peer.controls(), "the agent was ready")
    extra = streams.MAX_STREAMS + 1
    for number in range(1, extra + 1):
        peer.send(streams.control(streams.OPEN, number))
    peer.until(lambda: extra in _ended_streams(peer), "the extra stream was refused")
    assert _ended_streams(peer) == {
        extra: {
            "type": streams.ERROR,
            "stream": extra,
            "reason": f"at most {streams.MAX_STREAMS} streams at once",
        }
    }
    _stop(peer, join)


def test_the_veto_refuses_a_forward(web: int):
    peer = Peer()
    join = _join(peer, web, access=RemoteAccess())
    peer.until(lambda: peer.controls(), "the refusal")
    assert peer.controls() == [
        {
            "type": "close",
            "reason": "this device's fleet.yaml forbids forward sessions (remote.forward: false)",
        }
    ]
    _ended(join)


def test_only_the_loopback_and_a_real_port_are_dialled():
    with pytest.raises(OSError, match="not in 1..65535"):
        connect_local(0)
    listener = socket.create_server(("127.0.0.1", 0))
    with listener, connect_local(listener.getsockname()[1]) as sock:
        assert sock.getpeername()[0] == "127.0.0.1"
