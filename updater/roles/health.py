"""The health gate: read a project's containers with ``docker inspect`` and judge them.

:func:`judge` is pure (inspect JSON in, verdict out); :func:`wait_healthy` polls it under a
deadline. A container that exited, is restarting or restarted, or reports ``unhealthy`` fails
the gate at once, without waiting for the deadline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from fleetcore.errors import CommandError
from fleetcore.run import run
from fleetcore.wire import Health
from updater.roles.errors import EngineError, HealthGateFailed

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"


class Phase(StrEnum):
    HEALTHY = "healthy"
    WAITING = "waiting"
    FAILED = "failed"


@dataclass(frozen=True)
class Container:
    service: str
    status: str
    health: str | None
    restart_count: int
    exit_code: int
    last_probe: str

    @classmethod
    def from_inspect(cls, data: dict[str, Any]) -> Container:
        state = data.get("State", {})
        health = state.get("Health") or {}
        log = health.get("Log") or []
        labels = data.get("Config", {}).get("Labels") or {}
        return cls(
            service=labels.get(SERVICE_LABEL, data.get("Name", "?").lstrip("/")),
            status=state.get("Status", "unknown"),
            health=health.get("Status"),
            restart_count=int(data.get("RestartCount", 0)),
            exit_code=int(state.get("ExitCode", 0)),
            last_probe=(log[-1].get("Output", "") if log else "").strip()[-200:],
        )


@dataclass(frozen=True)
class Verdict:
    phase: Phase
    reason: str = ""


def judge(
    containers: Iterable[Container], services: Iterable[str], *, strict: bool = True
) -> Verdict:
    """Healthy when every service has a running, healthy container.

    ``strict`` (the gate after a fresh start) also fails a container that restarted at all;
    a long-running role may have restarted once and recovered.
    """
    by_service = {c.service: c for c in containers}
    waiting = ""
    for service in sorted(services):
        container = by_service.get(service)
        if container is None:
            waiting = waiting or f"service {service} has no container yet"
            continue
        if container.status in ("exited", "dead"):
            return Verdict(
                Phase.FAILED, f"service {service} exited with code {container.exit_code}"
            )
        if container.status == "restarting" or (strict and container.restart_count > 0):
            return Verdict(Phase.FAILED, f"service {service} is crash-looping")
        if container.health == "unhealthy":
            detail = f": {container.last_probe}" if container.last_probe else ""
            return Verdict(Phase.FAILED, f"service {service} is unhealthy{detail}")
        if container.status != "running" or container.health != "healthy":
            waiting = waiting or f"service {service} is {container.health or container.status}"
    if waiting:
        return Verdict(Phase.WAITING, waiting)
    return Verdict(Phase.HEALTHY)


def summarize(containers: Iterable[Container], services: Iterable[str]) -> Health:
    """Heartbeat health of a running role."""
    listed = list(containers)
    if not listed:
        return Health.UNHEALTHY
    verdict = judge(listed, services, strict=False)
    if verdict.phase is Phase.HEALTHY:
        return Health.HEALTHY
    if verdict.phase is Phase.WAITING:
        return Health.DEGRADED
    return Health.UNHEALTHY


class EngineView(Protocol):
    """What the role manager reads from the container engine (tests replay scripted views)."""

    def available(self) -> bool: ...

    def containers(self, project: str) -> list[Container]: ...


class Inspector:
    """Reads a project's containers through the docker CLI."""

    def __init__(self, docker: str = "docker") -> None:
        self.docker = docker

    def available(self) -> bool:
        """Whether the engine answers; while it does not, nothing can be judged."""
        return (
            run([self.docker, "info", "--format", "{{.ServerVersion}}"], check=False).returncode
            == 0
        )

    def containers(self, project: str) -> list[Container]:
        try:
            ids = run(
                [
                    self.docker,
                    "ps",
                    "--all",
                    "--quiet",
                    "--no-trunc",
                    "--filter",
                    f"label={PROJECT_LABEL}={project}",
                ]
            ).stdout.split()
            if not ids:
                return []
            raw = run([self.docker, "inspect", *[i.decode() for i in ids]], check=False).stdout
        except CommandError as err:
            raise EngineError(f"cannot list containers of {project}: {err}") from err
        try:
            items = json.loads(raw or b"[]")
        except json.JSONDecodeError as err:
            raise EngineError(f"docker inspect gave invalid JSON for {project}") from err
        return [
            Container.from_inspect(item)
            for item in items
            if (item.get("Config", {}).get("Labels") or {}).get(ONEOFF_LABEL) != "True"
        ]


def wait_healthy(
    inspector: EngineView,
    project: str,
    services: Iterable[str],
    *,
    timeout_s: float,
    strict: bool = True,
    poll_s: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once the project is healthy; raise :class:`HealthGateFailed` otherwise."""
    wanted = list(services)
    deadline = clock() + timeout_s
    while True:
        verdict = judge(inspector.containers(project), wanted, strict=strict)
        if verdict.phase is Phase.HEALTHY:
            return
        if verdict.phase is Phase.FAILED:
            raise HealthGateFailed(verdict.reason)
        if clock() >= deadline:
            raise HealthGateFailed(f"not healthy after {timeout_s:g} s: {verdict.reason}")
        sleep(poll_s)
