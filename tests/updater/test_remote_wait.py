"""The agent's wait for a remote session between polls (ADR 0083), against real sockets: an
Overlord without the route is not asked again for an hour, an unreachable one is backed off
from, stopping ends a held wait, and a device that forbids every kind never waits. The
wake itself is tested against ``overlord serve`` in tests/simulator/test_remote_wait.py."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from fleetcore.firstboot import RemoteAccess
from tests.updater.servers import FleetServer
from updater.overlord import Identity, OverlordClient
from updater.remote.wait import SessionWait


def _client(url: str) -> OverlordClient:
    client = OverlordClient(url, timeout=5)
    client.identity = Identity("dev-1", "s3cret-device-token")
    return client


@pytest.fixture
def silent() -> Iterator[str]:
    """An Overlord that accepts connections and never answers (a held long-poll)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        try:
            while True:
                accepted.append(listener.accept()[0])
        except OSError:  # the listener closed
            pass

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    for conn in accepted:
        conn.close()


def test_an_overlord_without_the_route_is_not_asked_again(server: FleetServer):
    wait = SessionWait(_client(server.url), RemoteAccess())
    assert wait.ready()
    assert wait.wait(1, threading.Event()) is False
    assert [p for p in server.requests if "remote-wait" in p] == [
        "/api/v1/devices/dev-1/remote-wait?timeout_s=1"
    ]
    assert not wait.ready()  # an hour before it asks again


def test_an_unreachable_overlord_is_backed_off_from():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    wait = SessionWait(_client(f"http://127.0.0.1:{port}"), RemoteAccess())
    assert wait.wait(1, threading.Event()) is False
    assert not wait.ready()


def test_stopping_ends_a_held_wait(silent: str):
    client = _client(silent)
    wait = SessionWait(client, RemoteAccess())
    stop = threading.Event()
    answers: list[bool] = []
    waiting = threading.Thread(target=lambda: answers.append(wait.wait(50, stop)))
    waiting.start()
    waiting.join(0.5)
    assert waiting.is_alive()  # held: the server says nothing
    stop.set()
    client.shut_down()
    waiting.join(20)
    assert not waiting.is_alive(), "the held wait outlived the stop"
    assert answers == [False]


def test_a_device_that_forbids_every_kind_never_waits(server: FleetServer):
    access = RemoteAccess(logs=False, shell=False, forward=False)
    wait = SessionWait(_client(server.url), access)
    assert not wait.wanted
    assert not wait.ready()
    assert SessionWait(_client(server.url), RemoteAccess(logs=False, shell=True)).ready()
