"""A simulated device enrolled with a served Overlord, for the remote-session tests: the
real updater's Agent on a file-backed disk, its ``fleet.yaml`` allowing what the test says
(``enrol``, also for other tests that need an enrolled simulated device)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fleetcore.version import Version
from overlord import migrate
from overlord.auth.models import KeyRole
from overlord.db import make_engine
from simulator.device import SimulatedDevice
from simulator.releases import build_release
from tests.overlord.conftest import create_token
from tests.overlord.servers import overlord_process, server_env
from tests.overlord.tufrepo import Repo, make_repo
from updater.agent import Agent

V1 = Version("1.0.0")


@dataclass(frozen=True)
class Enrolled:
    base: str  # the Overlord's URL
    admin: str  # an admin token
    device_id: str
    agent: Agent


def enrol(
    tmp_path: Path, name: str, base: str, url: str, repo: Repo, build: Path, **provision: bool
) -> tuple[SimulatedDevice, Agent, str]:
    """``name`` flashed with v1 (``build``) and ``provision``'s fleet.yaml options, powered on
    and enrolled (one agent cycle) with the Overlord at ``base`` (database ``url``, TUF
    ``repo``); the device, its agent and its id."""
    device = SimulatedDevice(name, tmp_path / "device")
    device.provision(
        build=build,
        version=str(V1),
        root_json=(repo.path / "metadata" / "1.root.json").read_bytes(),
        overlord_url=base,
        enrollment_token=create_token(url, KeyRole.ENROLLMENT),
        **provision,
    )
    device.power_on()
    agent = device.start_agent(base)
    agent.cycle()  # enrols
    identity = device.identity()
    assert identity is not None
    return device, agent, identity.device_id


@contextlib.contextmanager
def enrolled_device(tmp_path: Path, name: str, **remote: bool) -> Iterator[Enrolled]:
    """``name`` provisioned with ``remote`` (``remote_shell``, ``remote_forward``), powered
    on and enrolled (one agent cycle) with an Overlord served on SQLite."""
    url = f"sqlite:///{tmp_path / 'overlord.db'}"
    migrate.upgrade(make_engine(url))
    repo = make_repo(tmp_path / "tuf")
    build = build_release(tmp_path, V1)
    with overlord_process(server_env(url, repo), log=tmp_path / "s.log") as base:
        _device, agent, device_id = enrol(tmp_path, name, base, url, repo, build, **remote)
        try:
            yield Enrolled(base, create_token(url, KeyRole.ADMIN), device_id, agent)
        finally:
            agent.remote.stop()
