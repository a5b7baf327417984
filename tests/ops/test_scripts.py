"""The ops scripts: shellcheck-clean, strict mode, usage and clear one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.ops.tools import DEPLOY_DIR, find_tool, run_tool

BIN = DEPLOY_DIR / "bin"
SCRIPTS = ["deploy", "update", "backup", "restore", "logs", "stop", "render-config"]


def test_shellcheck_is_clean():
    result = run_tool(
        [find_tool("shellcheck"), "-x", "-P", "SCRIPTDIR", *(BIN / s for s in SCRIPTS)]
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_strict_mode_and_executable(script: str):
    path = BIN / script
    assert os.access(path, os.X_OK)
    lines = path.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_usage(script: str):
    result = run_tool([BIN / script, "--help"])
    assert result.returncode == 0
    assert "Usage:" in result.stdout


@pytest.mark.parametrize("script", ["deploy", "update", "backup", "restore", "stop"])
def test_unknown_option_is_one_clear_error(script: str):
    result = run_tool([BIN / script, "--frobnicate"])
    assert result.returncode == 1
    assert result.stderr.startswith(f"{script}: error: unknown argument: --frobnicate\n")
    assert f"{script}: hint: " in result.stderr
    assert "Traceback" not in result.stderr and "line " not in result.stderr


def test_deploy_without_env_file_says_how_to_fix(tmp_path: Path):
    env = {**os.environ, "FLEET_ENV_FILE": str(tmp_path / "missing.env")}
    result = run_tool([BIN / "deploy"], env=env)
    assert result.returncode == 1
    assert "deploy: error: " in result.stderr and "missing.env not found" in result.stderr
    assert "deploy: hint: copy" in result.stderr


def test_deploy_refuses_placeholder_secrets():
    env = {**os.environ, "FLEET_ENV_FILE": str(DEPLOY_DIR / ".env.example")}
    result = run_tool([BIN / "deploy"], env=env)
    assert result.returncode == 1
    assert "still has placeholder values: POSTGRES_PASSWORD" in result.stderr


def test_malformed_env_line_is_named(tmp_path: Path):
    env_file = tmp_path / ".env"
    env_file.write_text("POSTGRES_USER=overlord\nthis is not a setting\n")
    result = run_tool([BIN / "stop"], env={**os.environ, "FLEET_ENV_FILE": str(env_file)})
    assert result.returncode == 1
    assert f"{env_file}:2: expected KEY=value" in result.stderr


def test_restore_needs_confirmation(tmp_path: Path):
    (tmp_path / "db.dump").write_bytes(b"x")
    (tmp_path / "SHA256SUMS").write_text("")
    result = run_tool([BIN / "restore", tmp_path])
    assert result.returncode == 1
    assert "restore: error: restore replaces the whole database" in result.stderr
    assert "--yes" in result.stderr


def test_restore_rejects_a_folder_that_is_no_backup(tmp_path: Path):
    result = run_tool([BIN / "restore", tmp_path, "--yes"])
    assert result.returncode == 1
    assert "is not a backup" in result.stderr
