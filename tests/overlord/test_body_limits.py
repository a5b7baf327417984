"""Request bodies are capped per route class before anything reads them, and error answers
never echo the input."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx

from simulator.server import free_port, uvicorn_argv
from tests.overlord.conftest import Overlord

REGISTER = "/api/v1/devices/register"
SECRET = "mfe_s3cret-value-never-echoed"


def test_a_declared_oversized_body_is_refused_before_it_is_read(overlord: Overlord):
    answer = overlord.client.post(
        REGISTER,
        content=b"{" + b" " * (9 << 20) + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 413
    assert len(answer.content) < 200


def test_a_streamed_oversized_body_is_cut_at_the_cap(overlord: Overlord):
    def body():
        yield b'{"hostname": "'
        for _ in range(160):
            yield b"x" * 65536

    answer = overlord.client.post(
        REGISTER, content=body(), headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413


def test_a_validation_error_names_the_field_but_not_the_input(overlord: Overlord):
    body = {
        "enrollment_token": SECRET,
        "hostname": "h" * 300 + SECRET,
        "hardware": "pi4",
        "image_version": "1.0.0",
        "booted_slot": "a",
    }
    answer = overlord.client.post(REGISTER, json=body)
    assert answer.status_code == 422
    assert SECRET not in answer.text
    assert answer.json()["detail"][0]["loc"][-1] == "hostname"


def _vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_the_server_stays_small_under_oversized_bodies(tmp_path: Path):
    """A real server process receives 20 bodies of 100 MB (declared and chunked) with and
    without a token; its peak RSS stays under 300 MiB (it rose past 1.25 GB before)."""
    port = free_port()
    env = {
        **os.environ,
        "OVERLORD_DATABASE_URL": f"sqlite:///{tmp_path / 'o.db'}",
        "OVERLORD_REPO_DIR": str(tmp_path / "repo"),
        "OVERLORD_KEYS_DIR": str(tmp_path / "keys"),
    }
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        uvicorn_argv("overlord.app:create_app_from_env", port=port, workers=1, factory=True),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)
        block = b" " * (1 << 20)

        def chunked():
            for _ in range(100):
                yield block

        for number in range(20):
            headers = {"Content-Type": "application/json"}
            if number % 2:
                headers["Authorization"] = f"Bearer {SECRET}"
            path = REGISTER if number % 4 < 2 else "/api/v1/rollouts"
            try:
                if number % 3:
                    answer = httpx.post(
                        f"{base}{path}", content=chunked(), headers=headers, timeout=30
                    )
                else:
                    answer = httpx.post(
                        f"{base}{path}", content=block * 100, headers=headers, timeout=30
                    )
                assert answer.status_code in (401, 413), answer.status_code
            except httpx.HTTPError:
                pass  # the server may close the connection before the whole body is sent
        peak = _vm_hwm_kib(proc.pid)
        assert peak < 300 * 1024, f"peak RSS {peak} KiB"
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()
    assert SECRET not in (tmp_path / "server.log").read_text(errors="replace")
