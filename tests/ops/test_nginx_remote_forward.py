"""A port forward (ADR 0074, forwarding slice) through the shipped nginx config in front of
two real ``overlord serve`` replicas on PostgreSQL: the agent's own forward as a key-bound
device (signed upgrade) and ``fleetctl forward`` as its own process, both over nginx's TLS
and on different replicas (nginx's access log); several pages fetched at once arrive whole."""

from __future__ import annotations

import os
import signal
import ssl
from pathlib import Path

import httpx
import pytest

from fleetcore.firstboot import RemoteAccess
from fleetcore.net import free_port
from tests.fleetctl.test_logs import device_joins
from tests.ops.test_nginx_remote import (  # noqa: F401 (fixture)
    Stack,
    assert_on_two_replicas,
    device,
    stack,
    until,
)
from tests.overlord.conftest import pg_database  # noqa: F401 (fixture)
from tests.overlord.test_replicas import pg_repo  # noqa: F401 (fixture)
from tests.simulator.test_remote_forward import PATHS
from tests.webpages import fetch_all, page, serve_pages

pytestmark = pytest.mark.integration


def test_a_forward_through_nginx_spans_two_replicas(stack: Stack, tmp_path: Path):  # noqa: F811
    trust = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    with device(stack, tmp_path) as (client, device_id), serve_pages() as remote:
        allowed = httpx.put(
            f"{stack.base}/api/v1/config/devices/{device_id}/FLEET_REMOTE_FORWARD",
            json={"value": "1"},
            headers={"Authorization": f"Bearer {stack.admin}"},
            verify=trust,
        )
        assert allowed.status_code == 200, allowed.text
        local = free_port()
        operator = stack.fleetctl("forward", device_id, f"{local}:{remote}")
        follower = device_joins(client, RemoteAccess(forward=True))
        pages = fetch_all(local, PATHS)
        operator.send_signal(signal.SIGINT)
        _out, err = operator.communicate(timeout=60)
        assert operator.returncode == 0, err
        until(lambda: not follower.serving, "the agent's session to end")
    assert pages == {path: page(path) for path in PATHS}
    (ended,) = stack.sessions(device_id)
    assert (ended["kind"], ended["end_reason"]) == ("forward", "operator")
    assert_on_two_replicas(stack, device_id, ended["id"])
