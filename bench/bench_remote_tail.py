"""A remote log tail end to end (ADR 0074): the agent's join (its own thread, a paced
stand-in ``journalctl`` printing journal-sized lines) to an operator's WebSocket, through
the shipped nginx in front of two ``overlord serve`` replicas (the two sockets on different
replicas, so every line crosses PostgreSQL ``NOTIFY``), beside the same tail straight to one
replica and straight to two replicas, in the same run. Also the device side's memory: the
resident size of a process running the agent's remote code, idle (imported, enrolled,
polled) and with a log session open and streaming. And how long an admin's ``DELETE`` takes
to close both sockets, by the same three paths. Needs ``FLEET_TEST_PG_URL`` and nginx.

    PYTHONPATH=$PWD .venv/bin/python bench/bench_remote_tail.py [--lines 3000] \
        [--device-python .venv-device/bin/python]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

SOURCE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SOURCE))

from fleetcore.websocket import Closed, WebSocket  # noqa: E402
from overlord.auth.models import KeyRole  # noqa: E402
from simulator.server import serve  # noqa: E402
from simulator.site import prepare_site, scratch_database  # noqa: E402
from tests.ops.nginxrun import Echo, run_nginx, serve_upstreams  # noqa: E402

PACE_LINES, PACE_S = 100, 0.01  # the journal's pace: at most 10,000 lines a second
QUIET_S = 3.0  # the tail is over once nothing came for this long
# A stand-in for ``journalctl --follow`` (the real one needs systemd's journal): prints the
# file's lines at PACE, then waits to be killed as the real one does.
JOURNALCTL = f"""
import sys, time
lines = open({{file!r}}, "rb").read().splitlines(keepends=True)
for at in range(0, len(lines), {PACE_LINES}):
    sys.stdout.buffer.write(b"".join(lines[at : at + {PACE_LINES}]))
    sys.stdout.buffer.flush()
    time.sleep({PACE_S})
time.sleep(3600)
"""
ENTRY = {
    "__REALTIME_TIMESTAMP": "1764849600000000",
    "PRIORITY": "6",
    "_SYSTEMD_UNIT": "nginx.service",
    "SYSLOG_IDENTIFIER": "nginx",
    "_PID": "812",
}
# The device side, run in its own process so its resident size is its own: enrols, polls
# once, reports its RSS ("idle"), joins the session named on stdin and reports again once the
# parent says the lines have arrived ("open").
AGENT = """
import sys, time
from fleetcore.firstboot import RemoteAccess
from fleetcore.wire import DesiredRemote
from updater.overlord import Identity, OverlordClient
from updater.remote.follow import RemoteFollower
import updater.agent  # everything the agent imports, as on a device

def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

base, device_id, token = sys.argv[1:4]
client = OverlordClient(base, timeout=10)
client.identity = Identity(device_id, token)
client.desired_state(None)
print("idle", rss_kib(), flush=True)
session = sys.stdin.readline().strip()
follower = RemoteFollower(client, RemoteAccess(), version=lambda: "1.0.0")
follower.follow(DesiredRemote(session=session, kind="logs"))
sys.stdin.readline()
print("open", rss_kib(), flush=True)
follower.stop()
"""


def journal_file(folder: Path, lines: int) -> Path:
    path = folder / "journal.jsonl"
    with path.open("w") as out:
        for n in range(lines):
            out.write(json.dumps(ENTRY | {"MESSAGE": f"GET /health 200 {n:08d} " + "x" * 100}))
            out.write("\n")
    return path


def fake_journalctl(folder: Path, journal: Path) -> dict[str, str]:
    """The environment that puts the paced stand-in ``journalctl`` first on PATH."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    (folder / "journalctl.py").write_text(JOURNALCTL.format(file=str(journal)))
    script = bin_dir / "journalctl"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {folder / 'journalctl.py'}\n")
    script.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


class Fleet:
    def __init__(self, admin: str, enrollment: str, trust: ssl.SSLContext | None) -> None:
        self.admin = {"Authorization": f"Bearer {admin}"}
        self.enrollment, self.trust = enrollment, trust

    def enrol(self, base: str, serial: str) -> tuple[str, str]:
        body = {
            "enrollment_token": self.enrollment,
            "hostname": serial.lower(),
            "hardware": "pi5",
            "serial": serial,
            "image_version": "1.0.0",
            "booted_slot": "a",
        }
        answer = httpx.post(f"{base}/api/v1/devices/register", json=body, verify=self._verify)
        answer.raise_for_status()
        return answer.json()["device_id"], answer.json()["device_token"]

    def open(self, base: str, device_id: str) -> str:
        answer = httpx.post(
            f"{base}/api/v1/devices/{device_id}/remote-sessions",
            json={"kind": "logs", "lines": 0},
            headers=self.admin,
            verify=self._verify,
        )
        answer.raise_for_status()
        session_id: str = answer.json()["id"]
        return session_id

    @property
    def _verify(self) -> ssl.SSLContext | bool:
        return self.trust or True


def tail(
    fleet: Fleet, device_base: str, operator_base: str, lines: int, python: str, env: dict[str, str]
) -> tuple[float, int, int, int]:
    """One tail: lines a second reaching the operator, lines lost on the way (the Overlord's
    and the agent's bounded queues drop the oldest when the path is slower than the journal),
    and the device process's RSS (KiB) idle and with the session open."""
    device_id, token = fleet.enrol(device_base, f"TAIL{time.monotonic_ns()}")
    session_id = fleet.open(operator_base, device_id)
    operator = WebSocket(
        f"{operator_base}/api/v1/remote/{session_id}/attach", fleet.admin, context=fleet.trust
    )
    agent = subprocess.Popen(
        [python, "-c", AGENT, device_base, device_id, token],
        env={**os.environ, **env, "PYTHONPATH": str(SOURCE)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert agent.stdin is not None and agent.stdout is not None
    idle = int(agent.stdout.readline().split()[1])
    agent.stdin.write(session_id + "\n")
    agent.stdin.flush()
    times: list[float] = []
    dropped = 0
    while (message := operator.receive(QUIET_S if times else 60)) is not None:
        if isinstance(message, bytes):
            times.append(time.perf_counter())
        elif json.loads(message).get("type") == "dropped":
            dropped += json.loads(message)["count"]
    if len(times) < 2:
        raise SystemExit(f"only {len(times)} of {lines} lines arrived")
    # Lines the agent's bounded buffer dropped before sending are in neither count.
    lost = lines - len(times) - dropped
    agent.stdin.write("done\n")
    agent.stdin.flush()
    open_kib = int(agent.stdout.readline().split()[1])
    agent.wait(timeout=60)
    operator.close()
    return (len(times) - 1) / (times[-1] - times[0]), dropped + lost, idle, open_kib


def ending(fleet: Fleet, device_base: str, operator_base: str) -> float:
    """Seconds from an admin's ``DELETE`` being sent to both sockets being closed."""
    device_id, token = fleet.enrol(device_base, f"END{time.monotonic_ns()}")
    session_id = fleet.open(operator_base, device_id)
    device = WebSocket(
        f"{device_base}/api/v1/devices/{device_id}/remote/{session_id}",
        {"Authorization": f"Bearer {token}"},
        context=fleet.trust,
    )
    operator = WebSocket(
        f"{operator_base}/api/v1/remote/{session_id}/attach", fleet.admin, context=fleet.trust
    )
    started = time.perf_counter()
    answer = httpx.delete(
        f"{operator_base}/api/v1/remote-sessions/{session_id}",
        headers=fleet.admin,
        verify=fleet.trust or True,
    )
    answer.raise_for_status()
    for side in (device, operator):
        with contextlib.suppress(Closed):
            while side.receive(30) is not None:
                pass
            raise SystemExit("a socket stayed open 30 s after the DELETE")
    return time.perf_counter() - started


@contextlib.contextmanager
def stack(workdir: Path, url: str) -> Iterator[tuple[str, str, str, Fleet]]:
    """Two replicas and nginx in front; yields replica a, replica b, nginx and the tokens."""
    site = prepare_site(workdir, url)
    env = site.env(run_scheduler=False, cache_ttl_s=0)
    fleet = Fleet(site.token(KeyRole.ADMIN, "bench"), site.token(KeyRole.ENROLLMENT, "bench"), None)
    with (
        serve(env=env, log=workdir / "a.log") as a,
        serve(env=env, log=workdir / "b.log") as b,
        serve_upstreams({"grafana": Echo, "loki": Echo}) as others,
    ):
        ports = [int(base.rsplit(":", 1)[1]) for base in (a, b)]
        with run_nginx(workdir / "nginx", others, replicas=ports) as (public, _, cert):
            fleet.trust = ssl.create_default_context(cafile=str(cert))
            os.environ["SSL_CERT_FILE"] = str(cert)  # the agent's TLS context reads it
            yield a, b, public, fleet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device-python", default=sys.executable, help="the agent's Python")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench-remote-tail-") as tmp,
        scratch_database(os.environ["FLEET_TEST_PG_URL"], "bench_remote_tail") as url,
    ):
        work = Path(tmp)
        env = fake_journalctl(work, journal_file(work, args.lines))
        with stack(work, url) as (a, b, public, fleet):
            plain = Fleet(fleet.admin["Authorization"][7:], fleet.enrollment, None)
            runs = {
                "baseline, straight to one replica": (plain, a, a),
                "straight to two replicas (NOTIFY)": (plain, a, b),
                "through nginx, two replicas (NOTIFY)": (fleet, public, public),
            }
            results = {
                name: [
                    tail(f, dev, op, args.lines, args.device_python, env)
                    for _ in range(args.repeats)
                ]
                for name, (f, dev, op) in runs.items()
            }
            ends = {
                name: [ending(f, dev, op) for _ in range(args.repeats)]
                for name, (f, dev, op) in runs.items()
            }
    size = len(json.dumps(ENTRY | {"MESSAGE": "x" * 126}))
    print(
        f"{args.lines} journal lines of about {size} bytes written at up to "
        f"{PACE_LINES / PACE_S:,.0f}/s, median of {args.repeats}; lost: summed over the runs"
    )
    base = statistics.median(r[0] for r in results["baseline, straight to one replica"])
    for name, figures in results.items():
        rate = statistics.median(r[0] for r in figures)
        drops = sum(r[1] for r in figures)
        print(f"{name}: {rate:,.0f} lines/s ({base / rate:,.1f}x slower), {drops} lost")
    base_end = statistics.median(ends["baseline, straight to one replica"])
    for name, seconds in ends.items():
        end = statistics.median(seconds)
        print(
            f"an admin's DELETE to both sockets closed, {name}: {end * 1000:,.0f} ms "
            f"({end / base_end:,.1f}x the baseline)"
        )
    every = [r for figures in results.values() for r in figures]
    idle = statistics.median(r[2] for r in every)
    opened = statistics.median(r[3] for r in every)
    print(f"device agent RSS ({args.device_python}): idle {idle / 1024:.1f} MiB (baseline),")
    print(f"  with a log session open {opened / 1024:.1f} MiB (+{(opened - idle) / 1024:.1f} MiB)")


if __name__ == "__main__":
    main()
