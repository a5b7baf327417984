"""A container engine in memory, for role-manager tests that need no Docker.

:class:`FakeCompose` records every ``up`` with the ``.env`` it found in the project
directory (what the containers would run with); :class:`FakeEngine` reports the services of
each project brought up as running and healthy, or exited when ``sick`` says so of the
``.env`` they were started with. ``FakeCompose.refuse`` makes ``up`` fail as compose does,
quoting that ``.env``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetcore.rolebundle.bundle import load_bundle
from fleetcore.rolebundle.spec import ENV_FILE
from updater.roles import runtime
from updater.roles.compose import Compose, Project
from updater.roles.errors import EngineError
from updater.roles.health import Container
from updater.roles.manager import ManagerConfig, RoleEvent, RoleManager

from .helpers import REPO


@dataclass
class Up:
    project: str
    directory: Path
    env: str


class FakeCompose(Compose):
    waits = True

    def __init__(self) -> None:
        super().__init__(["fake-compose"])
        self.ups: list[Up] = []
        self.running: dict[str, list[str]] = {}  # project -> services
        self.refuse = False

    def up_argv(self, project: Project, *, wait_s: float, recreate: bool) -> list[str]:
        return []

    def check(self, project: Project, *, timeout_s: float = 60) -> None:
        return

    def up(
        self, project: Project, *, timeout_s: float, wait_s: float, recreate: bool = False
    ) -> None:
        env = (project.directory / ENV_FILE).read_text(encoding="utf-8")
        self.ups.append(Up(project.name, project.directory, env))
        if self.refuse:
            raise EngineError(f"fake-compose up failed: invalid interpolation in {env!r}")
        self.running[project.name] = sorted(load_bundle(project.directory, staged=True).services)

    def down(self, project: Project, *, timeout_s: float = 120) -> None:
        self.running.pop(project.name, None)


def _never(_env: str) -> bool:
    return False


@dataclass
class FakeEngine:
    compose: FakeCompose
    sick: Callable[[str], bool] = _never

    def available(self) -> bool:
        return True

    def containers(self, project: str) -> list[Container]:
        started = [up.env for up in self.compose.ups if up.project == project]
        sick = bool(started) and self.sick(started[-1])
        status, health = ("exited", None) if sick else ("running", "healthy")
        return [
            Container(s, status, health, restart_count=0, exit_code=1, last_probe="")
            for s in self.compose.running.get(project, [])
        ]


@dataclass
class Harness:
    manager: RoleManager
    compose: FakeCompose
    engine: FakeEngine
    events: list[RoleEvent]
    root: Path

    def env(self, role: str = "webapp") -> str:
        return (self.root / role / "current" / ENV_FILE).read_text(encoding="utf-8")

    def restarts(self, role: str = "webapp") -> int:
        return sum(1 for up in self.compose.ups if up.project == role)


def fake_harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    """A role manager on ``tmp_path`` with the fake engine; images count as present."""
    monkeypatch.setattr(runtime, "ensure_images", lambda bundle, docker="docker": None)
    compose = FakeCompose()
    engine = FakeEngine(compose)
    events: list[RoleEvent] = []
    config = ManagerConfig(
        device_id="dev-1",
        root=tmp_path / "roles",
        safe_mode_bundle=REPO / "safe-mode",
        role_config_dir=tmp_path / "role-config",
        poll_s=0.01,
    )
    manager = RoleManager(config, on_event=events.append, compose=compose, inspector=engine)
    return Harness(manager, compose, engine, events, config.root)
