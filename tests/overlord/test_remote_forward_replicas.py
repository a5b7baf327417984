"""A port forward across two real ``overlord serve`` replicas on one PostgreSQL (ADR 0074,
forwarding slice): the device's agent joins on one replica, ``fleetctl forward`` attaches on
the other, and several pages (one of 1 MiB) fetched at once through it arrive whole, relayed
by ``NOTIFY``; every stream's open and close is audited."""

from __future__ import annotations

import signal

import httpx
import pytest

from fleetcore.firstboot import RemoteAccess
from fleetcore.net import free_port
from tests.fleetctl.test_forward import allow_forwards
from tests.fleetctl.test_logs import device_joins
from tests.overlord.test_remote_agent import _follower, _until
from tests.overlord.test_remote_replicas import Replicas, replicas  # noqa: F401 (fixture)
from tests.overlord.test_replicas import _register, pg_repo  # noqa: F401 (fixture)
from tests.simulator.test_remote_forward import PATHS, forward_process, open_session
from tests.webpages import fetch_all, page, serve_pages

pytestmark = pytest.mark.integration


def test_a_forward_spans_two_replicas(replicas: Replicas):  # noqa: F811
    a, b, admin = replicas.a, replicas.b, replicas.admin
    token = admin["Authorization"].removeprefix("Bearer ")
    device_id, auth = _register(a, replicas.enrollment, "FWDREP1")
    allow_forwards(b, token, device_id)
    with serve_pages() as remote:
        local = free_port()
        operator = forward_process(b, token, device_id, f"{local}:{remote}")
        session = open_session(b, device_id, admin)
        client, _unused = _follower(a, device_id, auth, RemoteAccess(forward=True))
        follower = device_joins(client, RemoteAccess(forward=True))
        pages = fetch_all(local, PATHS)
        operator.send_signal(signal.SIGINT)
        _out, err = operator.communicate(timeout=60)
        _until(lambda: not follower.serving, "the agent's session to end")  # the operator's end
    assert operator.returncode == 0, err
    assert pages == {path: page(path) for path in PATHS}
    ended = httpx.get(f"{a}/api/v1/remote-sessions/{session['id']}", headers=admin).json()
    assert ended["end_reason"] == "operator"
    audit = httpx.get(f"{a}/api/v1/audit", params={"action": "remote.stream"}, headers=admin).json()
    events = [entry["after"]["event"] for entry in audit["items"]]
    assert events.count("stream_open") == len(PATHS)
    assert events.count("stream_close") >= len(PATHS)
