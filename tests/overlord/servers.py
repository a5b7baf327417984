"""Real Overlord processes (simulator.server, or the ``overlord serve`` command) and a
cuttable TCP proxy for failure tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from fleetcore.net import free_port
from simulator.server import serve, stop
from tests.overlord.tufrepo import Repo


def server_env(database_url: str, repo: Repo, **extra: str) -> dict[str, str]:
    """The settings of a served test Overlord: no scheduler, no desired-state cache."""
    return {
        "OVERLORD_DATABASE_URL": database_url,
        "OVERLORD_REPO_DIR": str(repo.path),
        "OVERLORD_KEYS_DIR": str(repo.keydir),
        "OVERLORD_RUN_SCHEDULER": "false",
        "OVERLORD_CACHE_TTL_S": "0",
        **extra,
    }


@contextlib.contextmanager
def overlord_serve(env: dict[str, str], *, log: Path) -> Iterator[str]:
    """The ``overlord serve`` command itself (its logging set-up, not only the app) on
    loopback; yields its base URL."""
    port = free_port()
    main = "import sys; from overlord.cli import main; sys.exit(main())"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", main, "serve", "--port", str(port)],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while not _healthy(base):
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "overlord serve did not start"
                time.sleep(0.2)
            yield base
        finally:
            stop(proc)


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def overlord_process(
    env: dict[str, str], *, port: int | None = None, workers: int = 1, log: Path | None = None
) -> contextlib.AbstractContextManager[str]:
    """``uvicorn overlord.app:create_app_from_env`` on loopback; yields its base URL."""
    return serve(env=env, port=port, workers=workers, log=log)


class TcpProxy:
    """Forwards a loopback port to a target; ``cut()`` drops every connection and refuses new."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would not.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _addr = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
