"""Request bodies are capped per route class before anything reads them, and error answers
never echo the input."""

from __future__ import annotations

from pathlib import Path

import httpx

from simulator.server import serve_process
from tests.overlord.conftest import Overlord
from tests.procstat import vm_hwm_kib

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


def test_the_server_stays_small_under_oversized_bodies(tmp_path: Path):
    """A real server process receives 20 bodies of 100 MB (declared and chunked) with and
    without a token; its peak RSS stays under 300 MiB (it rose past 1.25 GB before)."""
    env = {
        "OVERLORD_DATABASE_URL": f"sqlite:///{tmp_path / 'o.db'}",
        "OVERLORD_REPO_DIR": str(tmp_path / "repo"),
        "OVERLORD_KEYS_DIR": str(tmp_path / "keys"),
    }
    with serve_process(env=env, log=tmp_path / "server.log") as (base, proc):
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
        peak = vm_hwm_kib(proc.pid)
        assert peak < 300 * 1024, f"peak RSS {peak} KiB"
    assert SECRET not in (tmp_path / "server.log").read_text(errors="replace")
