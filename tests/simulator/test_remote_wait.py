"""A device joins a remote session well before its next poll (ADR 0083).

A simulated device runs the real agent's loop (``Agent.run_forever``) against real
``overlord serve`` processes with the default poll interval (60 s). Between polls it holds a
long-poll for a session; an admin opens one (on the other replica, on PostgreSQL) and the
device joins it before its next poll was due. Stopping the agent ends its held wait on the
Overlord; a device whose ``fleet.yaml`` forbids every kind never waits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from fleetcore.version import Version
from overlord import migrate
from overlord.auth.models import KeyRole
from overlord.db import make_engine
from simulator.device import SimulatedDevice
from simulator.releases import build_release
from tests.overlord.conftest import create_token
from tests.overlord.servers import overlord_process, overlord_serve, server_env
from tests.overlord.tufrepo import make_repo
from updater.agent import Agent
from updater.remote.wait import HOLD_MAX_S

pytestmark = pytest.mark.integration
V1 = Version("1.0.0")


def _until(predicate: Callable[[], bool], what: str) -> None:
    give_up = time.monotonic() + 30
    while time.monotonic() < give_up:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def _held(base: str) -> float:
    """The replica's ``fleet_remote_waits``: device long-polls it holds now."""
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith("fleet_remote_waits "):
            return float(line.split()[1])
    raise AssertionError("fleet_remote_waits is not exported")


@dataclass
class Running:
    """An agent's ``run_forever`` in a thread; ``polls`` holds, for each cycle, when it
    ended and when the next was due, as it returned, and ``started`` when each began
    (``time.monotonic``); ``desired`` the desired state each cycle left (the same object
    after a 304)."""

    agent: Agent
    thread: threading.Thread
    polls: list[tuple[float, float]] = field(default_factory=list)
    started: list[float] = field(default_factory=list)
    desired: list[object] = field(default_factory=list)


@contextmanager
def _agent(tmp_path: Path, url: str, base: str, *, remote_logs: bool = True) -> Iterator[Running]:
    root_json = next((tmp_path / "tuf").rglob("1.root.json")).read_bytes()
    device = SimulatedDevice("sim-wait", tmp_path / "device")
    device.provision(
        build=build_release(tmp_path, V1),
        version=str(V1),
        root_json=root_json,
        overlord_url=base,
        enrollment_token=create_token(url, KeyRole.ENROLLMENT),
        remote_logs=remote_logs,
    )
    device.power_on()
    agent = device.start_agent(base)
    running = Running(agent, threading.Thread(target=lambda: None))
    cycle = agent.cycle

    def recorded() -> float:  # the real cycle, its answer noted
        running.started.append(time.monotonic())
        wait = cycle()
        ended = time.monotonic()
        running.polls.append((ended, ended + wait))
        running.desired.append(agent.desired)
        return wait

    agent.cycle = recorded  # type: ignore[method-assign]
    running.thread = threading.Thread(
        target=agent.run_forever, kwargs={"watchdog_s": None, "lock": tmp_path / "agent.lock"}
    )
    running.thread.start()
    try:
        yield running
    finally:
        agent.stop()
        running.thread.join(60)


@contextmanager
def _replicas(
    tmp_path: Path, database: str, pg_url: str, **settings: str
) -> Iterator[tuple[str, str, str]]:
    """(database URL, the device's replica, the admin's replica): two on PostgreSQL, one
    on SQLite."""
    with ExitStack() as stack:
        if database == "postgresql":
            from simulator.site import scratch_database

            url = stack.enter_context(scratch_database(pg_url, "remote_wait_test"))
        else:
            url = f"sqlite:///{tmp_path / 'overlord.db'}"
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        repo = make_repo(tmp_path / "tuf")
        env = server_env(url, repo, **settings)
        if database == "postgresql":
            a = stack.enter_context(overlord_process(env, log=tmp_path / "a.log"))
            b = stack.enter_context(overlord_process(env, log=tmp_path / "b.log"))
        else:  # the ``overlord serve`` command itself, its HTTP protocol guards included
            a = b = stack.enter_context(overlord_serve(env, log=tmp_path / "a.log"))
        yield url, a, b


def _device_id(running: Running) -> str:
    _until(lambda: running.agent.client.identity is not None, "the device to enrol")
    identity = running.agent.client.identity
    assert identity is not None
    return identity.device_id


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_device_joins_a_session_opened_on_the_other_replica_before_its_next_poll(
    tmp_path: Path, database: str, pg_url: str
):
    with (
        _replicas(tmp_path, database, pg_url) as (url, a, b),
        _agent(tmp_path, url, a) as running,
    ):
        admin = {"Authorization": f"Bearer {create_token(url, KeyRole.ADMIN)}"}
        device_id = _device_id(running)
        _until(lambda: _held(a) == 1, "the device's wait to be held")
        polls, (ended, next_poll_due) = len(running.polls), running.polls[-1]
        assert running.agent.interval == 60  # the default poll interval

        opened = httpx.post(
            f"{b}/api/v1/devices/{device_id}/remote-sessions", json={"kind": "logs"}, headers=admin
        )
        assert opened.status_code == 201, opened.text
        session = f"{b}/api/v1/remote-sessions/{opened.json()['id']}"
        _until(lambda: httpx.get(session, headers=admin).json()["joined_at"], "the join")
        joined = time.monotonic()
        httpx.delete(session, headers=admin)

    assert joined < next_poll_due, "joined only at the next regular poll"
    # Not by the wait after this one (which finds the session open), but woken in this one.
    assert joined < ended + HOLD_MAX_S, "joined only when the held wait ran out"
    assert len(running.polls) > polls  # the poll that named the session came early
    assert not running.thread.is_alive()


def test_stopping_the_agent_ends_its_held_wait(tmp_path: Path, pg_url: str):
    with (
        _replicas(tmp_path, "sqlite", pg_url) as (url, a, _b),
        _agent(tmp_path, url, a) as running,
    ):
        _device_id(running)
        _until(lambda: _held(a) == 1, "the device's wait to be held")
        # The wait began after the cycle ended and asked for a hold of HOLD_MAX_S.
        held_until = running.polls[-1][0] + HOLD_MAX_S
        running.agent.stop()
        running.thread.join(60)
        assert not running.thread.is_alive()
        _until(lambda: _held(a) == 0, "the Overlord to let the wait go")
        assert time.monotonic() < held_until, "the wait ran out instead of ending"


def test_a_device_that_forbids_every_kind_does_not_wait(tmp_path: Path, pg_url: str):
    with (
        _replicas(tmp_path, "sqlite", pg_url) as (url, a, _b),
        _agent(tmp_path, url, a, remote_logs=False) as running,
    ):
        _device_id(running)
        _until(lambda: len(running.polls) >= 1, "the first poll")
        assert not running.agent.session_wait.wanted
        time.sleep(1)  # long enough for a wait to be under way, were there one
        assert _held(a) == 0
        assert running.thread.is_alive()


def test_waits_between_polls_keep_the_poll_cadence_and_its_304s(tmp_path: Path, pg_url: str):
    with (
        _replicas(tmp_path, "sqlite", pg_url, OVERLORD_POLL_INTERVAL_S="5") as (url, a, _b),
        _agent(tmp_path, url, a) as running,
    ):
        _until(lambda: _held(a) == 1, "a wait between polls")
        _until(lambda: len(running.polls) >= 4, "four polls")
    polls = running.polls[:4]
    for (_ended, due), started in zip(polls[:3], running.started[1:4], strict=True):
        assert started >= due, "a poll came before it was due"
    assert all(due - ended == pytest.approx(5) for ended, due in polls[1:])  # the interval
    # The first poll read the desired state; the others were 304s (the same object kept).
    assert running.desired[1] is running.desired[2] is running.desired[3]
