"""The compose backends' command lines, run against a recording fake of the CLI on PATH."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from updater.roles.compose import ComposeFlavor, ComposeV1, ComposeV2, Project, detect
from updater.roles.errors import EngineError

FAKE = """#!/bin/sh
printf '%s\\n' "$0 $*" >> "{log}"
if [ "$1" = compose ] && [ "$2" = version ]; then exit {v2_status}; fi
exit {status}
"""


def fake_cli(bin_dir: Path, name: str, log: Path, *, v2: bool, status: int = 0) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(FAKE.format(log=log, v2_status=0 if v2 else 1, status=status))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def fake_path(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


PROJECT = Project(name="webapp", directory=Path("/data/roles/webapp/1.0.0"), compose_file="c.yaml")
BASE = [
    "--project-name", "webapp",
    "--project-directory", "/data/roles/webapp/1.0.0",
    "--file", "/data/roles/webapp/1.0.0/c.yaml",
    "--file", "/data/roles/webapp/1.0.0/fleet.override.yaml",
    "--env-file", "/data/roles/webapp/1.0.0/.env",
]  # fmt: skip


def test_v2_is_preferred_and_waits(fake_path, tmp_path):
    log = tmp_path / "log"
    fake_cli(fake_path, "docker", log, v2=True)
    fake_cli(fake_path, "docker-compose", log, v2=False)
    compose = detect()
    assert isinstance(compose, ComposeV2)
    compose.up(PROJECT, timeout_s=30, wait_s=20)
    lines = log.read_text().splitlines()
    assert lines[-1].split()[1:] == [
        "compose",
        *BASE,
        "up",
        "--detach",
        "--wait",
        "--wait-timeout",
        "20",
        "--remove-orphans",
    ]


def test_v1_when_the_plugin_is_missing(fake_path, tmp_path):
    log = tmp_path / "log"
    fake_cli(fake_path, "docker", log, v2=False)
    fake_cli(fake_path, "docker-compose", log, v2=False)
    compose = detect()
    assert isinstance(compose, ComposeV1)
    compose.up(PROJECT, timeout_s=30, wait_s=20, recreate=True)
    compose.down(PROJECT)
    up, down = log.read_text().splitlines()[-2:]
    assert up.split()[1:] == [*BASE, "up", "--detach", "--remove-orphans", "--force-recreate"]
    assert down.split()[1:] == [*BASE, "down", "--remove-orphans"]


def test_forcing_v2_without_the_plugin_fails(fake_path, tmp_path):
    fake_cli(fake_path, "docker", tmp_path / "log", v2=False)
    fake_cli(fake_path, "docker-compose", tmp_path / "log", v2=False)
    with pytest.raises(EngineError, match="v2 is not installed"):
        detect(ComposeFlavor.V2)


def test_failure_is_an_engine_error(fake_path, tmp_path):
    fake_cli(fake_path, "docker-compose", tmp_path / "log", v2=False, status=1)
    with pytest.raises(EngineError, match="docker-compose"):
        ComposeV1(["docker-compose"]).up(PROJECT, timeout_s=30, wait_s=20)


def test_nothing_installed(fake_path):
    with pytest.raises(EngineError, match="not installed"):
        detect()


def test_compose_runs_with_a_clean_environment(fake_path, tmp_path, monkeypatch):
    """Compose interpolation must not see the updater's environment (proxy credentials)."""
    dump = tmp_path / "env"
    fake_path.mkdir()
    docker = fake_path / "docker"
    docker.write_text(f'#!/bin/sh\n[ "$2" = version ] && exit 0\n/usr/bin/env > "{dump}"\n')
    docker.chmod(0o755)
    monkeypatch.setenv("HTTPS_PROXY", "http://user:hunter2@proxy:3128")
    monkeypatch.setenv("FLEET_TOKEN", "tok-secret")
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/docker.sock")
    detect().up(PROJECT, timeout_s=30, wait_s=20)
    seen = dict(line.split("=", 1) for line in dump.read_text().splitlines())
    assert set(seen) <= {"PATH", "HOME", "DOCKER_HOST", "LANG", "LC_ALL", "PWD", "SHLVL", "_"}
    assert seen["DOCKER_HOST"] == "unix:///run/docker.sock"
    assert "hunter2" not in dump.read_text()
