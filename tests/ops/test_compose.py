"""docker-compose.yml: validated by compose itself, and the stack's operating rules."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.tools import DEPLOY_DIR, find_tool, run_tool

COMPOSE_FILE = DEPLOY_DIR / "docker-compose.yml"
REQUIRED_SERVICES = {
    "postgres",
    "overlord",
    "scheduler",
    "prometheus",
    "grafana",
    "loki",
    "alertmanager",
    "nginx",
}


def compose_command() -> list[str]:
    """docker compose v2 when the plugin is there, else Debian's docker-compose v1."""
    docker = shutil.which("docker")
    if docker and run_tool([docker, "compose", "version"]).returncode == 0:
        return [docker, "compose"]
    return [find_tool("docker-compose")]


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The compose file as compose resolves it with .env.example."""
    env_file = tmp_path_factory.mktemp("compose") / ".env"
    shutil.copy(DEPLOY_DIR / ".env.example", env_file)
    result = run_tool(
        [
            *compose_command(),
            "--project-directory",
            DEPLOY_DIR,
            "-f",
            COMPOSE_FILE,
            "--env-file",
            env_file,
            "config",
        ]
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert isinstance(config, dict)
    return config


def test_all_services_are_there(resolved: dict[str, Any]):
    assert set(resolved["services"]) >= REQUIRED_SERVICES


def test_every_service_has_healthcheck_restart_and_limits(resolved: dict[str, Any]):
    for name, service in resolved["services"].items():
        assert service.get("healthcheck", {}).get("test"), f"{name}: no healthcheck"
        assert service.get("restart") == "unless-stopped", f"{name}: no restart policy"
        limits = service["deploy"]["resources"]["limits"]
        assert limits.get("cpus") and limits.get("memory"), f"{name}: no resource limits"


def test_only_nginx_is_public(resolved: dict[str, Any]):
    public = {name for name, service in resolved["services"].items() if service.get("ports")}
    assert public == {"nginx"}
    assert not any(s.get("network_mode") == "host" for s in resolved["services"].values())


def named_volumes(service: dict[str, Any]) -> set[str]:
    """Named volume sources of a service, from compose v2's long or v1's short syntax."""
    names = set()
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume["type"] == "volume":
                names.add(volume["source"])
        elif not volume.startswith(("/", ".")):
            names.add(volume.split(":", 1)[0])
    return names


def test_state_lives_in_named_volumes(resolved: dict[str, Any]):
    declared = set(resolved["volumes"])
    for name in ("postgres", "overlord", "prometheus", "alertmanager", "grafana", "loki"):
        named = named_volumes(resolved["services"][name])
        assert named, f"{name}: no named volume"
        assert named <= declared


def test_database_is_on_an_internal_network(resolved: dict[str, Any]):
    assert resolved["networks"]["db"].get("internal") is True
    on_db = {n for n, s in resolved["services"].items() if "db" in s.get("networks", {})}
    assert on_db == {"postgres", "overlord", "scheduler"}


def test_overlord_is_scalable_and_configured(resolved: dict[str, Any]):
    api = resolved["services"]["overlord"]
    assert "container_name" not in api
    assert api["deploy"]["replicas"] == 2
    assert api["command"] == ["overlord", "serve", "--host", "0.0.0.0", "--port", "8000"]
    url = api["environment"]["OVERLORD_DATABASE_URL"]
    assert url.startswith("postgresql+psycopg://overlord:change-me@postgres:5432/")
    assert api["environment"]["OVERLORD_RUN_SCHEDULER"] == "false"
    scheduler = resolved["services"]["scheduler"]
    assert scheduler["command"] == api["command"]
    assert scheduler["environment"]["OVERLORD_RUN_SCHEDULER"] == "true"
    assert scheduler["environment"]["OVERLORD_DATABASE_URL"] == url
    assert api["build"]["dockerfile"] == "overlord/deploy/Dockerfile"


def script_services(name: str) -> list[str]:
    lib = (DEPLOY_DIR / "bin" / "lib.sh").read_text()
    match = re.search(rf"^{name}=\(([^)]*)\)", lib, re.MULTILINE)
    assert match, name
    return match.group(1).split()


def test_scripts_know_every_service():
    core, observability = (
        script_services("CORE_SERVICES"),
        script_services("OBSERVABILITY_SERVICES"),
    )
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    assert sorted(core + observability) == sorted(services)
    assert set(script_services("OVERLORD_SERVICES")) <= set(core)


def test_core_services_never_wait_for_observability(resolved: dict[str, Any]):
    # Prometheus, Grafana or Loki down: nothing else notices (docs/operations.md).
    core = set(script_services("CORE_SERVICES"))
    for name, service in resolved["services"].items():
        depends = set(service.get("depends_on", {}))
        assert depends <= core, f"{name} depends on {depends - core}"


def test_mounted_config_files_exist():
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./") and not source.startswith("./.rendered/"):
                assert (DEPLOY_DIR / source).exists(), f"{name}: {source}"


def test_dockerfile_installs_the_overlord_extra():
    dockerfile = (DEPLOY_DIR / "Dockerfile").read_text()
    assert "pip install '.[overlord]'" in dockerfile
    assert re.search(r"^USER overlord$", dockerfile, re.MULTILINE)
    for source in re.findall(r"^COPY (?!--from)(\S+)", dockerfile, re.MULTILINE):
        assert (DEPLOY_DIR.parents[1] / source).exists(), source


def test_env_example_covers_every_compose_variable():
    text = COMPOSE_FILE.read_text()
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    example = (DEPLOY_DIR / ".env.example").read_text()
    declared = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", example, re.MULTILINE))
    optional = {"PROMETHEUS_RETENTION"}
    assert used - optional <= declared


def test_broken_compose_file_is_rejected(tmp_path: Path):
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        COMPOSE_FILE.read_text().replace("    healthcheck:\n", "    healthcheck: 7\n", 1)
    )
    env_file = tmp_path / ".env"
    shutil.copy(DEPLOY_DIR / ".env.example", env_file)
    result = run_tool([*compose_command(), "-f", broken, "--env-file", env_file, "config", "-q"])
    assert result.returncode != 0
