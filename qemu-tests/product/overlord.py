"""An Overlord on the host: `overlord serve` on SQLite on a loopback port, serving /tuf.

The guest reaches it through the harness's loopback relay (`harness.qemu.loopback_service`).
Stopping and starting the process again (same database, same repository) plays an outage.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from fleetcore.net import free_port
from fleetcore.run import run_text
from product import tool

API = "/api/v1"
CHUNK_GET = re.compile(r'"GET \S*/chunks/([0-9a-f]{4}/[0-9a-f]{64})\.zst HTTP')
START_SECONDS = 60.0


class Overlord:
    def __init__(self, workdir: Path, repo: Path, keys: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "overlord.log"
        self.env = {
            **os.environ,
            "OVERLORD_DATABASE_URL": f"sqlite:///{workdir / 'overlord.db'}",
            "OVERLORD_REPO_DIR": str(repo),
            "OVERLORD_KEYS_DIR": str(keys),
            # A scenario should not wait for the production cadence.
            "OVERLORD_ENGINE_INTERVAL_S": "2",
            "OVERLORD_POLL_INTERVAL_S": "5",
            "OVERLORD_CACHE_TTL_S": "0",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.admin_token = ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [tool("overlord"), "-v", "serve", "--port", str(self.port)],
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"overlord exited {self.proc.returncode}:\n{self.log_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"overlord not up in {START_SECONDS} s:\n{self.log_text()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def chunk_requests(self) -> list[str]:
        """The release chunks served so far (``abcd/abcd...``), one per GET, from the access log."""
        return CHUNK_GET.findall(self.log_text())

    def token(self, role: str) -> str:
        out = run_text([tool("overlord"), "token", "create", "--role", role], env=self.env)
        return out.strip().splitlines()[-1]

    # -- the admin API --------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        if not self.admin_token:
            self.admin_token = self.token("admin")
        return httpx.Client(
            base_url=self.url + API,
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=30,
        )

    def get(self, path: str, **params: Any) -> Any:
        with self._client() as client:
            response = client.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def get_text(self, path: str) -> str:
        with self._client() as client:
            response = client.get(path)
        response.raise_for_status()
        return response.text

    def put(self, path: str, body: dict[str, Any]) -> Any:
        with self._client() as client:
            response = client.put(path, json=body)
        if response.is_error:
            raise RuntimeError(f"PUT {path}: {response.status_code} {response.text}")
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        with self._client() as client:
            response = client.post(path, json=body)
        if response.is_error:
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text}")
        return response.json()

    def devices(self) -> list[dict[str, Any]]:
        page = self.get("/devices")
        items: list[dict[str, Any]] = page["items"]
        return items

    def device(self, device_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.get(f"/devices/{device_id}")
        return found

    def events(self, device_id: str) -> list[dict[str, Any]]:
        """The device's events, newest first (the whole story holds far fewer than 1000)."""
        found = self.get(f"/devices/{device_id}/events", limit=1000)
        items: list[dict[str, Any]] = found["items"] if isinstance(found, dict) else found
        return items

    def the_device(self) -> dict[str, Any] | None:
        """The one device, or None before it enrolled."""
        devices = self.devices()
        return devices[0] if devices else None

    def abort_unfinished_rollouts(self) -> None:
        """Abort what an earlier scenario left running: one unfinished rollout per release
        line (the OS, each role) at a time."""
        for rollout in self.get("/rollouts"):
            if rollout["state"] not in ("aborted", "completed"):
                self.post(f"/rollouts/{rollout['id']}/abort", {})

    def rollout(self, name: str, version: str, *, role: str | None = None) -> dict[str, Any]:
        """Roll ``version`` of the OS, or of ``role``, out to every device at once (one stage,
        no success window): a role rollout is how the desired state assigns a role."""
        created: dict[str, Any] = self.post(
            "/rollouts",
            {
                "name": name,
                "kind": "os" if role is None else "role",
                "role": role,
                "version": version,
                "canary_devices": 1,
                "stages": [100],
                "success_window_s": 0,
                "failure_threshold": 1.0,
            },
        )
        return created
