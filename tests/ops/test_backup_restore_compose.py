"""bin/backup and bin/restore in their default mode: against the compose stack's containers.

The stack's PostgreSQL and Overlord services run from a stand-in image (tests/ops/standin.py),
layered over docker-compose.yml with FLEET_COMPOSE_OVERRIDE, on the real Docker engine.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.ops.standin import OVERLORD_UID, POSTGRES_UID, build_standin_image
from tests.ops.test_compose import compose_command
from tests.ops.tools import DEPLOY_DIR, run_tool

pytestmark = pytest.mark.integration

BIN = DEPLOY_DIR / "bin"
ROWS_SQL = """
CREATE TABLE devices (id int PRIMARY KEY, name text NOT NULL, image_version text NOT NULL);
INSERT INTO devices SELECT n, 'pi-' || n, '1.' || (n % 4) || '.0' FROM generate_series(1, 50) n;
"""
SELECT_SQL = "SELECT id, name, image_version FROM devices ORDER BY id"


@dataclass(frozen=True)
class Stack:
    """A compose project of the stack; the test's own probes use the faster docker CLI."""

    env: dict[str, str]
    backups: Path
    docker: str
    image: str

    @property
    def project(self) -> str:
        return self.env["COMPOSE_PROJECT_NAME"]

    def compose(self, *args: str) -> str:
        argv = [
            *compose_command(),
            "--project-directory",
            str(DEPLOY_DIR),
            "-f",
            str(DEPLOY_DIR / "docker-compose.yml"),
            "-f",
            self.env["FLEET_COMPOSE_OVERRIDE"],
            "--env-file",
            self.env["FLEET_ENV_FILE"],
            "-p",
            self.project,
            *args,
        ]
        result = run_tool(argv)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def docker_run(self, *args: str, stdin: str | None = None) -> str:
        argv = [self.docker, *args]
        result = run_tool(argv, input=stdin) if stdin is not None else run_tool(argv)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def containers(self, service: str) -> list[str]:
        labels = ["--filter", f"label=com.docker.compose.project={self.project}"]
        labels += ["--filter", f"label=com.docker.compose.service={service}"]
        return self.docker_run("ps", "-q", *labels).split()

    def psql(self, sql: str) -> str:
        (postgres,) = self.containers("postgres")
        argv = ["exec", "-i", postgres, "psql", "-qAt", "-U", "overlord", "-d", "overlord"]
        return self.docker_run(*argv, stdin=sql)

    def overlord_sh(self, script: str) -> str:
        """Run a shell script in a throwaway container on the Overlord's data volume."""
        volume = f"{self.project}_overlord-data:/var/lib/overlord"
        argv = ["run", "--rm", "--user", str(OVERLORD_UID), "-v", volume, "--network", "none"]
        return self.docker_run(*argv, self.image, "sh", "-c", script)

    def script(self, name: str, *args: str | Path) -> tuple[int, str]:
        result = run_tool([BIN / name, *args], env=self.env)
        return result.returncode, result.stderr


def override(image: str) -> dict[str, object]:
    fast = {"interval": "2s", "timeout": "5s", "retries": 30, "start_period": "0s"}
    overlord = {
        "image": image,
        "user": str(OVERLORD_UID),
        "command": ["sleep", "3600"],
        "healthcheck": {"test": ["CMD", "true"], **fast},
    }
    postgres = {"image": image, "user": str(POSTGRES_UID), "healthcheck": fast}
    return {"services": {"postgres": postgres, "overlord": overlord, "scheduler": overlord}}


def wait_healthy(docker: str, container: str) -> None:
    status = ""
    for _ in range(120):
        status = run_tool([docker, "inspect", "-f", "{{.State.Health.Status}}", container]).stdout
        if status.strip() == "healthy":
            return
        time.sleep(0.5)
    pytest.fail(f"postgres container not healthy: {status}")


def remove_project(docker: str, project: str) -> None:
    """What `compose down --volumes` does, with the (much faster) docker CLI."""
    label = f"label=com.docker.compose.project={project}"
    for kind, listing in (
        ("container", ["ps", "-aq"]),
        ("volume", ["volume", "ls", "-q"]),
        ("network", ["network", "ls", "-q"]),
    ):
        ids = run_tool([docker, *listing, "--filter", label]).stdout.split()
        if ids:
            force = ["--force"] if kind != "network" else []
            result = run_tool([docker, kind, "rm", *force, *ids])
            assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def stack(docker_engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("compose-stack")
    run_id = uuid.uuid4().hex[:10]
    image = build_standin_image(docker_engine, f"fleet-test/ops-standin:{run_id}")
    override_file = root / "override.yml"
    override_file.write_text(yaml.safe_dump(override(image)))
    env_file = root / ".env"
    shutil.copy(DEPLOY_DIR / ".env.example", env_file)
    env = {
        **os.environ,
        "FLEET_ENV_FILE": str(env_file),
        "FLEET_COMPOSE_OVERRIDE": str(override_file),
        "COMPOSE_PROJECT_NAME": f"opstest{run_id}",
        "BACKUP_DIR": str(root / "backups"),
        "OVERLORD_API_REPLICAS": "2",
    }
    stack = Stack(env=env, backups=root / "backups", docker=docker_engine, image=image)
    try:
        stack.compose("up", "-d", "postgres")
        (postgres,) = stack.containers("postgres")
        wait_healthy(docker_engine, postgres)
        yield stack
    finally:
        remove_project(docker_engine, stack.project)
        run_tool([docker_engine, "image", "rm", "--force", image])


def test_backup_wipe_restore_through_compose(stack: Stack):
    stack.psql(ROWS_SQL)
    before = stack.psql(SELECT_SQL)
    assert before.count("\n") == 50
    metadata = "/var/lib/overlord/repo/metadata"
    stack.overlord_sh(f"mkdir -p {metadata} && echo root > {metadata}/1.root.json")

    code, err = stack.script("backup")
    assert code == 0, err
    made = sorted(stack.backups.glob("overlord-*"))
    assert len(made) == 1
    assert sorted(p.name for p in made[0].iterdir()) == ["SHA256SUMS", "data.tar.gz", "db.dump"]

    stack.psql("DROP TABLE devices; CREATE TABLE stray (x int);")
    stack.overlord_sh("rm -r /var/lib/overlord/repo && echo junk > /var/lib/overlord/junk")

    code, err = stack.script("restore", made[0], "--yes")
    assert code == 0, err
    assert stack.psql(SELECT_SQL) == before
    assert stack.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'") == "devices\n"
    files = stack.overlord_sh(f"cat {metadata}/1.root.json; ls /var/lib/overlord")
    assert files == "root\nrepo\n"
    assert len(stack.containers("overlord")) == 2
    assert len(stack.containers("scheduler")) == 1
