"""Alertmanager config rendered from .env.example by the real render script, checked by amtool."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.ops.tools import DEPLOY_DIR, find_tool, run_tool

RENDER = DEPLOY_DIR / "bin" / "render-config"


def render(tmp_path: Path, env_file: Path) -> Path:
    out = tmp_path / "rendered"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALERT_", "LOKI_"))}
    result = run_tool([RENDER, "--output", out], env={**env, "FLEET_ENV_FILE": str(env_file)})
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    return render(tmp_path, DEPLOY_DIR / ".env.example")


def test_rendered_config_passes_amtool(rendered: Path):
    result = run_tool([find_tool("amtool"), "check-config", rendered / "alertmanager.yml"])
    assert result.returncode == 0, result.stdout + result.stderr
    text = (rendered / "alertmanager.yml").read_text()
    assert "${" not in text
    assert "ops@example.com" in text


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["severity=critical", "alertname=OverlordDown"], "on-call,operators-email"),
        (["severity=warning", "alertname=RolloutHalted"], "operators-email"),
        (["severity=warning", "alertname=DeviceOffline"], "operators-email"),
    ],
)
def test_routes(rendered: Path, labels: list[str], receivers: str):
    result = run_tool(
        [
            find_tool("amtool"),
            "config",
            "routes",
            "test",
            f"--config.file={rendered / 'alertmanager.yml'}",
            f"--verify.receivers={receivers}",
            *labels,
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_secrets_are_rendered_for_nginx_and_prometheus(rendered: Path):
    user, hashed = (rendered / "loki-push.htpasswd").read_text().strip().split(":", 1)
    assert user == "fleet-device" and hashed.startswith("$apr1$")
    assert (rendered / "overlord-sd-token").read_text() == "change-me"
    assert oct(rendered.stat().st_mode & 0o777) == "0o700"


def test_missing_value_fails_with_a_clear_error(tmp_path: Path):
    env_file = tmp_path / ".env"
    lines = (DEPLOY_DIR / ".env.example").read_text().splitlines()
    env_file.write_text("\n".join(line for line in lines if not line.startswith("ALERT_EMAIL_TO=")))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALERT_", "LOKI_"))}
    result = run_tool(
        [RENDER, "--output", tmp_path / "out"], env={**env, "FLEET_ENV_FILE": str(env_file)}
    )
    assert result.returncode == 1
    assert "render-config: error: ALERT_EMAIL_TO is empty" in result.stderr
    assert not (tmp_path / "out" / "alertmanager.yml").exists()


def test_broken_config_fails_amtool(rendered: Path):
    broken = rendered / "broken.yml"
    broken.write_text(
        (rendered / "alertmanager.yml").read_text().replace("receiver: on-call", "receiver: nobody")
    )
    result = run_tool([find_tool("amtool"), "check-config", broken])
    assert result.returncode != 0
