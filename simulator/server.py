"""An Overlord (or any ASGI app) as a uvicorn child process on loopback.

The demo, the load tests and the benchmarks run the server in its own process so that its
work never competes with the simulated devices for this process's GIL. This is a long-lived
server, not a command run to completion, so it is started with ``subprocess.Popen`` rather
than ``fleetcore.run.run``; it is always stopped (terminate, then kill) when the block ends.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

from fleetcore.net import free_port
from simulator.errors import ServerError

OVERLORD_APP = "overlord.app:create_app_from_env"
START_TIMEOUT_S = 60.0


def uvicorn_argv(app: str, *, port: int, workers: int, factory: bool) -> list[str]:
    argv = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    return [*argv, "--factory"] if factory else argv


@contextlib.contextmanager
def serve(
    app: str = OVERLORD_APP,
    *,
    env: Mapping[str, str],
    workers: int = 1,
    factory: bool = True,
    health_path: str = "/health",
    log: Path | None = None,
    port: int | None = None,
) -> Iterator[str]:
    """Run ``app`` under uvicorn until the block ends; yields its base URL once it answers."""
    with serve_process(
        app,
        env=env,
        workers=workers,
        factory=factory,
        health_path=health_path,
        log=log,
        port=port,
    ) as (base, _proc):
        yield base


@contextlib.contextmanager
def serve_process(
    app: str = OVERLORD_APP,
    *,
    env: Mapping[str, str],
    workers: int = 1,
    factory: bool = True,
    health_path: str = "/health",
    log: Path | None = None,
    port: int | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """:func:`serve`, also yielding the server process (to measure it, for example)."""
    port = port or free_port()
    argv = uvicorn_argv(app, port=port, workers=workers, factory=factory)
    out = log.open("ab") if log else None
    proc = subprocess.Popen(
        argv,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=out or subprocess.DEVNULL,
        stderr=out or subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, f"{base}{health_path}", log)
        yield base, proc
    finally:
        stop(proc)
        if out is not None:
            out.close()


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 15 s: a process that ignores the first still ends."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path | None) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    where = f"; see {log}" if log else ""
    while True:
        if proc.poll() is not None:
            raise ServerError(f"the server exited with status {proc.returncode}{where}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise ServerError(f"the server did not answer {url} within {START_TIMEOUT_S:.0f} s")
        time.sleep(0.2)
