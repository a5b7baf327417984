"""The device WebSocket's handshake on a real ``overlord serve`` (uvicorn) on PostgreSQL:
another device's token gets an HTTP 403 before the upgrade, the device's own a
``101 Switching Protocols``. A raw HTTP/1.1 upgrade request, no WebSocket library: only the
status line is read."""

from __future__ import annotations

import base64
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from overlord.auth.models import KeyRole
from tests.overlord.conftest import create_token
from tests.overlord.servers import overlord_process
from tests.overlord.test_replicas import _env, _register, pg_repo  # noqa: F401 (fixture)
from tests.overlord.tufrepo import Repo

pytestmark = pytest.mark.integration


def _upgrade_status(base: str, path: str, auth: dict[str, str]) -> str:
    """The status line the server answers a WebSocket upgrade of ``path`` with."""
    address = urlsplit(base)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {address.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: {auth['Authorization']}\r\n\r\n"
    )
    with socket.create_connection((address.hostname, address.port), timeout=30) as conn:
        conn.sendall(request.encode())
        answer = b""
        while b"\r\n" not in answer:
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n", 1)[0].decode()


def test_the_handshake_refuses_another_devices_token_and_accepts_the_own(
    pg_repo: tuple[str, Repo],  # noqa: F811
    tmp_path: Path,
):
    url, repo = pg_repo
    enrollment = create_token(url, KeyRole.ENROLLMENT)
    admin = {"Authorization": f"Bearer {create_token(url, KeyRole.ADMIN)}"}
    with overlord_process(_env(url, repo), log=tmp_path / "serve.log") as base:
        device_id, own = _register(base, enrollment, "WSSERVE1")
        _other, other = _register(base, enrollment, "WSSERVE2")
        opened = httpx.post(
            f"{base}/api/v1/devices/{device_id}/remote-sessions",
            json={"kind": "logs"},
            headers=admin,
        )
        assert opened.status_code == 201, opened.text
        path = f"/api/v1/devices/{device_id}/remote/{opened.json()['id']}"
        assert _upgrade_status(base, path, other).split(" ")[1] == "403"
        assert _upgrade_status(base, path, own).split(" ")[1] == "101"
