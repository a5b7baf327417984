"""An agent for a simulated device, talking to the test Overlord over real HTTP."""

from __future__ import annotations

import random
from typing import Protocol

import yaml

from tests.updater.device import SimDevice
from updater.agent import Agent
from updater.config import load_config
from updater.overlord import OverlordClient


class Served(Protocol):
    """What a device is pointed at: the test Overlord, or a hostile front for it."""

    @property
    def url(self) -> str: ...

    @property
    def tuf_url(self) -> str: ...


def setup_device(device: SimDevice, server: Served, **extra: object) -> None:
    device.roots.fleet_yaml.write_text(
        yaml.safe_dump(
            {"overlord_url": server.url, "enrollment_token": "enrol-me", "hostname": "cam-07"}
        )
    )
    device.roots.data_config.parent.mkdir(parents=True, exist_ok=True)
    device.roots.data_config.write_text(
        yaml.safe_dump(
            {"repository_url": server.tuf_url, "poll_min_s": 30, "poll_max_s": 120, **extra}
        )
    )


def make_agent(device: SimDevice) -> Agent:
    engine = device.engine()
    config = load_config(device.roots)
    assert config.overlord_url is not None
    return Agent(
        roots=device.roots,
        config=config,
        engine=engine,
        events=engine.events,
        client=OverlordClient(config.overlord_url, timeout=5),
        rng=random.Random(7),
    )
