"""Paths, tool lookup and fixture loading for the ops stack tests.

The checks run the real Debian tools (promtool, amtool, nginx, docker-compose, shellcheck,
systemd-analyze) that scripts/test installs from scripts/apt-packages.txt; a missing tool fails
the test rather than skipping it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "overlord" / "deploy"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def find_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: run the suite through scripts/test (apt-packages.txt)")
    return path


def run_tool(argv: Sequence[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a checker and return its result without raising; tests assert on returncode."""
    if "input" not in kwargs:
        kwargs["stdin"] = subprocess.DEVNULL
    return subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        **kwargs,
    )


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


def make_self_signed_cert(tls_dir: Path, *, san: str = "IP:127.0.0.1") -> Path:
    """A throwaway EC certificate for ``san`` as tls_dir/fullchain.pem (+ privkey.pem)."""
    cert = tls_dir / "fullchain.pem"
    argv = [find_tool("openssl"), "req", "-x509", "-newkey", "ec"]
    argv += ["-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"]
    argv += ["-subj", "/CN=overlord.test", "-addext", f"subjectAltName={san}"]
    argv += ["-keyout", str(tls_dir / "privkey.pem"), "-out", str(cert)]
    result = run_tool(argv)
    assert result.returncode == 0, result.stderr
    return cert
