"""Key-press-to-echo latency of a remote shell (ADR 0074, shell slice), and the memory of the
agent's process with a shell open.

The device side is a child process that imports the agent (``updater.agent``) and serves the
session with :class:`updater.remote.join.Join` running a real ``/bin/sh`` in a PTY, put in
``stty raw -echo; exec cat`` so every key comes straight back. One key at a time is sent
and timed until its echo is read: through ``overlord serve`` with the device and operator on
one replica, on two replicas (PostgreSQL ``NOTIFY`` between them), and, as the baseline in the
same run, straight to a WebSocket peer in this process (no Overlord). The child's RSS is read
from ``/proc`` before it joins and with the shell open. Needs ``FLEET_TEST_PG_URL``.

    PYTHONPATH=$PWD .venv/bin/python bench/bench_remote_shell.py [--keys 300]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

SOURCE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SOURCE))

from fleetcore.websocket import WebSocket  # noqa: E402
from overlord import migrate  # noqa: E402
from overlord.auth.models import KeyRole  # noqa: E402
from overlord.db import make_engine  # noqa: E402
from simulator.site import scratch_database  # noqa: E402
from tests.overlord.conftest import create_token  # noqa: E402
from tests.overlord.servers import overlord_process  # noqa: E402
from tests.overlord.test_replicas import _env, _register  # noqa: E402
from tests.overlord.tufrepo import make_repo  # noqa: E402
from tests.updater.test_remote_shell import ALLOWED, SESSION, SHELL, Peer  # noqa: E402
from updater.remote.join import Join  # noqa: E402

RAW_CAT = b"stty raw -echo; exec cat\n"
AGENT = """
import json, sys, threading
import updater.agent  # noqa: F401  (the agent's modules, as its process holds them)
from fleetcore.firstboot import RemoteAccess
from fleetcore.wire import DesiredRemote
from updater.remote.join import Join
import httpx
print(open("/proc/self/status").read().split("VmRSS:")[1].split()[0], flush=True)
url, headers, session = json.loads(sys.argv[1])
join = Join(DesiredRemote(session=session, kind="shell"), url=httpx.URL(url), headers=headers,
            access=RemoteAccess(shell=True), version="bench", shell_command=["/bin/sh"])
join.start()
sys.stdin.read()
join.stop()
"""


def rss_kib(pid: int) -> int:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0])


class Operator:
    """The operator's end: send keys, read until the terminal output holds what is awaited."""

    def __init__(self, send: Callable[[bytes], None], read: Callable[[], bytes]) -> None:
        self.send, self._read = send, read
        self.seen = bytearray()

    def until(self, done: Callable[[bytes], bool]) -> None:
        while not done(bytes(self.seen)):
            self.seen += self._read()


def timed_echoes(operator: Operator, keys: int) -> list[float]:
    """Seconds from each key sent to its echo read, one key at a time, once ``cat`` runs."""
    operator.until(lambda seen: b"$ " in seen or b"# " in seen)  # the device has joined
    operator.send(RAW_CAT)
    operator.until(lambda seen: RAW_CAT.strip() in seen)
    operator.seen.clear()
    operator.send(b"k")  # not timed: its echo says cat runs with the terminal raw
    operator.until(lambda seen: b"k" in seen)
    operator.seen.clear()
    samples = []
    for number in range(1, keys + 1):
        started = time.perf_counter()
        operator.send(b"k")
        operator.until(lambda seen, n=number: seen.count(b"k") >= n)
        samples.append(time.perf_counter() - started)
    return samples


def through_overlord(
    device_base: str, operator_base: str, url: str, keys: int
) -> tuple[list[float], int, int]:
    """Echo latencies with the device on ``device_base`` and the operator on ``operator_base``;
    the agent child's RSS (KiB) before joining and with the shell open."""
    admin = {"Authorization": f"Bearer {create_token(url, KeyRole.ADMIN)}"}
    enrollment = create_token(url, KeyRole.ENROLLMENT)
    device_id, auth = _register(device_base, enrollment, os.urandom(4).hex().upper())
    httpx.put(
        f"{device_base}/api/v1/config/devices/{device_id}/FLEET_REMOTE_SHELL",
        json={"value": "1"},
        headers=admin,
    ).raise_for_status()
    opened = httpx.post(
        f"{operator_base}/api/v1/devices/{device_id}/remote-sessions",
        json={"kind": "shell"},
        headers=admin,
    )
    opened.raise_for_status()
    session_id = opened.json()["id"]
    socket = WebSocket(f"{operator_base}/api/v1/remote/{session_id}/attach", admin)
    target = f"{device_base}/api/v1/devices/{device_id}/remote/{session_id}"
    child = subprocess.Popen(
        [sys.executable, "-c", AGENT, json.dumps([target, auth, session_id])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    before = int(child.stdout.readline())

    def read() -> bytes:
        message = socket.receive(30)
        assert isinstance(message, bytes), message
        return message

    samples = timed_echoes(Operator(socket.send_bytes, read), keys)
    during = rss_kib(child.pid)
    socket.send_text(json.dumps({"type": "close", "reason": "bench done"}))
    socket.close()
    child.stdin.close()
    child.wait(timeout=30)
    return samples, before, during


def in_process(keys: int) -> list[float]:
    """The baseline: the agent's Join and PTY against a WebSocket peer here, no Overlord."""
    peer = Peer()
    join = Join(
        SESSION, url=peer.url(), headers={}, access=ALLOWED, version="bench", shell_command=SHELL
    )
    join.start()
    peer.hello()

    def read() -> bytes:
        before = len(peer.received)
        peer.until(lambda: len(peer.received) > before, "output")
        return b"".join(m for m in peer.received[before:] if isinstance(m, bytes))

    samples = timed_echoes(Operator(peer.send, read), keys)
    join.stop()
    return samples


def summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    return f"{name}: p50 {p50:.2f} ms, p99 {p99:.2f} ms ({len(samples)} keys)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=300)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        scratch_database(os.environ["FLEET_TEST_PG_URL"], "bench_remote_shell") as url,
    ):
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        repo = make_repo(Path(tmp) / "tuf")
        env = _env(url, repo, OVERLORD_RUN_SCHEDULER="false")
        with (
            overlord_process(env, log=Path(tmp) / "a.log") as a,
            overlord_process(env, log=Path(tmp) / "b.log") as b,
        ):
            one, before, during = through_overlord(a, a, url, args.keys)
            two, _before, _during = through_overlord(a, b, url, args.keys)
    base = in_process(args.keys)
    print(summary("baseline, agent to a peer in this process (no Overlord)", base))
    print(summary("through one overlord serve replica", one))
    print(summary("across two replicas (PostgreSQL NOTIFY)", two))
    print(
        f"agent process RSS: {before:,} KiB before joining, {during:,} KiB with the shell "
        f"open (+{during - before:,} KiB)"
    )


if __name__ == "__main__":
    main()
