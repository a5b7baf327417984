"""``docker compose`` behind one small interface: the v2 plugin, or Debian's docker-compose v1.

v2 waits for health itself (``up --wait --wait-timeout``) and exits non-zero when a container
is unhealthy, exited or still starting at the deadline; v1 has no ``--wait``, so the manager's
health gate (:mod:`.health`) polls ``docker inspect`` instead. The gate runs after both (and
explains a failed v2 wait), so the two backends end in the same check.
"""

from __future__ import annotations

import math
import os
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from fleetcore.errors import CommandError
from fleetcore.rolebundle.errors import BundleError
from fleetcore.rolebundle.spec import ENV_FILE, OVERRIDE_FILE
from fleetcore.run import run
from updater.roles.errors import EngineError


class ComposeFlavor(StrEnum):
    AUTO = "auto"
    V2 = "v2"
    V1 = "v1"


@dataclass(frozen=True)
class Project:
    """One compose project: a role version's directory run under a fixed project name."""

    name: str
    directory: Path
    compose_file: str

    def files(self) -> list[Path]:
        return [self.directory / self.compose_file, self.directory / OVERRIDE_FILE]


def clean_environment() -> list[str]:
    """``NAME=value`` for what compose needs from the updater's environment, and no more."""
    keep = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    keep["HOME"] = os.environ.get("HOME", "/root")
    if "DOCKER_HOST" in os.environ:
        keep["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
    keep.update(LANG="C.UTF-8", LC_ALL="C.UTF-8")
    return [f"{name}={value}" for name, value in keep.items()]


class Compose(ABC):
    """Start and stop a project; ``up`` returns once containers exist (v1) or are healthy (v2)."""

    #: whether ``up`` itself waits for health, so that its failure can be a failed gate
    waits: bool = False

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv

    def _base(self, project: Project) -> list[str]:
        # compose interpolates ${VAR} from its own environment before the --env-file: run it
        # with only what it needs, so a role cannot read the updater's (proxy credentials).
        argv = [
            "/usr/bin/env",
            "-i",
            *clean_environment(),
            *self.argv,
            "--project-name",
            project.name,
        ]
        argv += ["--project-directory", str(project.directory)]
        for path in project.files():
            argv += ["--file", str(path)]
        return [*argv, "--env-file", str(project.directory / ENV_FILE)]

    def _run(self, argv: list[str], timeout: float) -> None:
        try:
            run(argv, timeout=timeout)
        except CommandError as err:
            raise EngineError(f"{' '.join(self.argv[:2])} failed: {err}") from err

    def check(self, project: Project, *, timeout_s: float = 60) -> None:
        """Let compose parse the project (schema, interpolation) without touching containers."""
        argv = [*self._base(project), "config", "--quiet"]
        try:
            run(argv, timeout=timeout_s)
        except CommandError as err:
            if err.returncode is None:
                raise EngineError(f"{self.argv[0]} failed: {err}") from err
            raise BundleError(f"docker compose rejects the bundle: {err}") from err

    @abstractmethod
    def up_argv(self, project: Project, *, wait_s: float, recreate: bool) -> list[str]: ...

    def up(
        self, project: Project, *, timeout_s: float, wait_s: float, recreate: bool = False
    ) -> None:
        """Create and start the project; ``wait_s`` bounds a v2 health wait."""
        self._run(self.up_argv(project, wait_s=wait_s, recreate=recreate), timeout_s)

    def down(self, project: Project, *, timeout_s: float = 120) -> None:
        self._run([*self._base(project), "down", "--remove-orphans"], timeout_s)


class ComposeV2(Compose):
    waits = True

    def up_argv(self, project: Project, *, wait_s: float, recreate: bool) -> list[str]:
        argv = [*self._base(project), "up", "--detach", "--wait"]
        argv += ["--wait-timeout", str(max(1, math.ceil(wait_s))), "--remove-orphans"]
        return [*argv, "--force-recreate"] if recreate else argv


class ComposeV1(Compose):
    def up_argv(self, project: Project, *, wait_s: float, recreate: bool) -> list[str]:
        argv = [*self._base(project), "up", "--detach", "--remove-orphans"]
        return [*argv, "--force-recreate"] if recreate else argv


def detect(flavor: ComposeFlavor = ComposeFlavor.AUTO) -> Compose:
    """The compose implementation to use: v2 when the plugin answers, else v1."""
    if flavor is not ComposeFlavor.V1 and shutil.which("docker"):
        probe = run(["docker", "compose", "version"], check=False)
        if probe.returncode == 0:
            return ComposeV2(["docker", "compose"])
    if flavor is not ComposeFlavor.V2 and shutil.which("docker-compose"):
        return ComposeV1(["docker-compose"])
    wanted = "docker compose v2" if flavor is ComposeFlavor.V2 else "docker compose"
    raise EngineError(
        f"{wanted} is not installed",
        hint="install the docker compose plugin (or Debian's docker-compose)",
    )
