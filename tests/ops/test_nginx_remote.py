"""Remote sessions (ADR 0074) through the shipped nginx config in front of two real
``overlord serve`` replicas on PostgreSQL.

The device is the agent's own code (a key-bound device: signed upgrade, journal tail from a
fake ``journalctl``), the operator is ``fleetctl logs -f`` as its own process; both go
through nginx's TLS, and their sockets land on different replicas (checked in nginx's access
log, which names the upstream of each request once it is over). Lines arrive in order, a
close from either side ends both, and an admin's ``DELETE`` closes both sockets.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from fleetcore.firstboot import RemoteAccess
from overlord.auth.models import KeyRole
from overlord.settings import Settings
from tests.fleetctl.test_logs import PRINTED, device_joins
from tests.ops.nginxrun import CONF, Echo, run_nginx, serve_upstreams
from tests.overlord.conftest import create_token, pg_database  # noqa: F401 (fixture)
from tests.overlord.servers import overlord_serve
from tests.overlord.test_device_rekey import _enrol
from tests.overlord.test_replicas import _env, pg_repo  # noqa: F401 (fixture)
from tests.overlord.tufrepo import Repo
from tests.updater.test_remote_journal import fake_journal  # noqa: F401 (fixture)
from updater.overlord import OverlordClient
from updater.remote.follow import RemoteFollower

pytestmark = pytest.mark.integration
SOURCE = Path(__file__).resolve().parents[2]


class Stack:
    """nginx's public URL and access log, and the admin's token."""

    def __init__(self, base: str, access: Path, admin: str, database: str) -> None:
        self.base, self.access, self.admin, self.database = base, access, admin, database

    def fleetctl(self, *args: str) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
        env |= {"PYTHONPATH": str(SOURCE), "XDG_CONFIG_HOME": str(self.access.parent / "cfg")}
        argv = [sys.executable, "-m", "fleetctl", "--url", self.base, "--token", self.admin]
        return subprocess.Popen(
            [*argv, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def api(self, method: str, path: str) -> httpx.Response:
        """An admin's request through nginx to ``/api/v1{path}``."""
        trust = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
        headers = {"Authorization": f"Bearer {self.admin}"}
        return httpx.request(method, f"{self.base}/api/v1{path}", headers=headers, verify=trust)

    def sessions(self, device_id: str) -> list[dict[str, str]]:
        answer = self.api("GET", f"/devices/{device_id}/remote-sessions")
        assert answer.status_code == 200, answer.text
        items: list[dict[str, str]] = answer.json()
        return items

    def upstreams(self, path: str) -> list[str]:
        """The replicas that upgraded a WebSocket on ``path`` (101), by nginx's access log."""
        lines = self.access.read_text().splitlines()
        return [line.split("upstream=")[1].split()[0] for line in lines if f"{path} " in line]


@pytest.fixture
def stack(
    pg_repo: tuple[str, Repo],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Stack]:
    url, repo = pg_repo
    env = _env(url, repo, OVERLORD_RUN_SCHEDULER="false")
    with (
        overlord_serve(env, log=tmp_path / "a.log") as a,
        overlord_serve(env, log=tmp_path / "b.log") as b,
        serve_upstreams({"grafana": Echo, "loki": Echo}) as others,
    ):
        ports = [int(base.rsplit(":", 1)[1]) for base in (a, b)]
        with run_nginx(tmp_path / "nginx", others, replicas=ports) as (base, _, cert):
            # The agent's TLS context, httpx and fleetctl all read the CA bundle from here.
            monkeypatch.setenv("SSL_CERT_FILE", str(cert))
            admin = create_token(url, KeyRole.ADMIN)
            yield Stack(base, tmp_path / "nginx" / "access.log", admin, url)


def until(predicate: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def assert_on_two_replicas(stack: Stack, device_id: str, session_id: str) -> None:
    """The session's device socket and operator socket went to different replicas."""
    paths = (f"/devices/{device_id}/remote/{session_id}", f"/remote/{session_id}/attach")
    until(lambda: all(stack.upstreams(path) for path in paths), "nginx's access log")
    on_device, on_operator = (stack.upstreams(path) for path in paths)
    assert len(on_device) == len(on_operator) == 1 and on_device != on_operator


@contextlib.contextmanager
def device(stack: Stack, tmp_path: Path) -> Iterator[tuple[OverlordClient, str]]:
    """A key-bound device enrolled through nginx; yields its client and id."""
    client = OverlordClient(stack.base, timeout=10)
    try:
        yield client, _enrol(client, stack.database, tmp_path / "device-key.pem")
    finally:
        client.close()


def tailing(
    stack: Stack, client: OverlordClient, device_id: str
) -> tuple[subprocess.Popen[str], RemoteFollower]:
    """``fleetctl logs -f`` and the agent's join, once the journal's lines are printed."""
    operator = stack.fleetctl("logs", device_id, "-f")
    follower = device_joins(client, RemoteAccess())
    assert operator.stdout is not None
    assert [operator.stdout.readline().rstrip("\n") for _ in PRINTED] == PRINTED
    return operator, follower


@pytest.mark.usefixtures("fake_journal")
def test_a_log_tail_through_nginx_spans_two_replicas_and_either_side_ends_it(
    stack: Stack, tmp_path: Path
):
    with device(stack, tmp_path) as (client, device_id):
        operator, follower = tailing(stack, client, device_id)
        # The operator leaves (Ctrl-C): the device's socket on the other replica ends.
        operator.send_signal(signal.SIGINT)
        assert operator.wait(timeout=60) == 0
        until(lambda: not follower.serving, "the agent's session to end")
        (ended,) = stack.sessions(device_id)
        assert (ended["state"], ended["end_reason"]) == ("ended", "operator")
        assert_on_two_replicas(stack, device_id, ended["id"])

        # The device leaves (its agent stops): fleetctl ends with the device's reason.
        operator, follower = tailing(stack, client, device_id)
        follower.stop()
        assert operator.wait(timeout=60) == 1
        assert operator.stderr is not None and "the agent stopped" in operator.stderr.read()
        latest = stack.sessions(device_id)[0]
        assert (latest["state"], latest["end_reason"]) == ("ended", "device")


@pytest.mark.usefixtures("fake_journal")
def test_an_admin_ending_a_session_closes_both_sockets_across_replicas(
    stack: Stack, tmp_path: Path
):
    with device(stack, tmp_path) as (client, device_id):
        operator, follower = tailing(stack, client, device_id)
        (session,) = stack.sessions(device_id)
        answer = stack.api("DELETE", f"/remote-sessions/{session['id']}")
        assert answer.status_code == 200, answer.text
        assert operator.wait(timeout=60) == 1
        assert operator.stderr is not None and "ended by test admin" in operator.stderr.read()
        # The device does not poll again here: only its socket closing stops its thread.
        until(lambda: not follower.serving, "the agent's session to end")
        (ended,) = stack.sessions(device_id)
        assert (ended["state"], ended["end_reason"]) == ("ended", "operator")


def test_the_session_sockets_outlive_every_overlord_limit_in_nginx():
    """nginx never ends a quiet session before the Overlord's own idle and length limits do,
    and passes frames unbuffered; the Upgrade headers hold for every location."""
    sockets = r"location ~ \^/api/v1/\(devices.*?remote.*?\{(.*?)\}"
    (block,) = re.findall(sockets, CONF.read_text(), re.S)
    (read_s,) = re.findall(r"proxy_read_timeout (\d+)s;", block)
    fields = Settings.model_fields
    for limit in ("remote_idle_timeout_s", "remote_max_length_s"):
        assert int(read_s) > (fields[limit].default or 0), limit
    assert "proxy_buffering off;" in block
    assert "proxy_set_header" not in block  # would drop the server-wide Upgrade headers
    server = CONF.read_text()
    assert "proxy_set_header Upgrade $http_upgrade;" in server
    assert "proxy_set_header Connection $connection_upgrade;" in server
