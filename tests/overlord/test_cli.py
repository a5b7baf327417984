"""The ``overlord`` command: migrations, tokens and the admin commands, on SQLite."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from sqlalchemy import text

from overlord.cli import main
from overlord.db import make_engine
from tests.overlord.conftest import register_device
from tests.overlord.tufrepo import Repo


@pytest.fixture
def env(tmp_path: Path, repo: Repo, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OVERLORD_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("OVERLORD_REPO_DIR", str(repo.path))
    monkeypatch.setenv("OVERLORD_KEYS_DIR", str(repo.keydir))
    assert main(["db", "upgrade"]) == 0
    return tmp_path


@pytest.fixture
def fleet_env(env: Path) -> Path:
    """``env`` with one enrolled device, for commands that create rollouts."""
    register_device(f"sqlite:///{env / 'cli.db'}", serial="CLI1")
    return env


def test_token_create_prints_a_token(env, capsys):
    capsys.readouterr()
    assert main(["token", "create", "--role", "operator", "--name", "ci"]) == 0
    assert capsys.readouterr().out.startswith("mfo_")
    assert main(["token", "list"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["role"] == "operator"


def test_release_and_rollout_commands(fleet_env, capsys):
    capsys.readouterr()
    assert main(["release", "list", "--kind", "os"]) == 0
    versions = [r["version"] for r in json.loads(capsys.readouterr().out)]
    assert versions == ["1.1.0", "1.0.0"]
    assert main(["rollout", "create", "spring", "--version", "1.1.0", "--stages", "25", "100"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["state"] == "running" and created["stages"] == [25, 100]
    assert main(["rollout", "pause", str(created["id"])]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "paused"
    assert main(["rollout", "abort", str(created["id"])]) == 0
    assert main(["device", "list"]) == 0


def test_expected_failures_are_one_line(fleet_env, capsys):
    capsys.readouterr()
    assert main(["rollout", "create", "x", "--version", "9.9.9"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("overlord: error: no signed os release") and "Traceback" not in err
    assert main(["rollout", "create", "x", "--version", "1.1.0", "--stages", "50"]) == 1
    assert "end at 100" in capsys.readouterr().err
    assert main(["device", "status", "nope", "quarantined"]) == 1


def test_changes_made_here_are_audited_as_the_local_user(fleet_env, capsys):
    capsys.readouterr()
    assert main(["token", "create", "--role", "viewer", "--name", "wall screen"]) == 0
    token = capsys.readouterr().out.strip()
    assert main(["rollout", "create", "spring", "--version", "1.1.0"]) == 0
    engine = make_engine(f"sqlite:///{fleet_env / 'cli.db'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT actor_key_id, actor_name, source, via, action, after FROM audit_log")
            ).all()
    finally:
        engine.dispose()
    assert [row.action for row in rows] == ["token.create", "rollout.create"]
    for row in rows:
        assert row.actor_key_id is None and row.source == "local" and row.via == "cli"
        assert row.actor_name.endswith(f"@{socket.gethostname()}")
    assert "wall screen" in rows[0].after and token not in rows[0].after
