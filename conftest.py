"""Fixtures for real services shared by every tier.

Integration tests never skip for a missing service: ``scripts/test`` starts PostgreSQL and
dockerd, and a test that cannot reach them fails with a message saying how to start them.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


@pytest.fixture(scope="session")
def pg_url() -> str:
    """URL of the PostgreSQL server that scripts/test started."""
    url = os.environ.get("FLEET_TEST_PG_URL")
    if not url:
        pytest.fail("FLEET_TEST_PG_URL is not set: run the suite through scripts/test")
    return url


@pytest.fixture(scope="session")
def docker_engine() -> str:
    """Path of the docker CLI, once the engine answers."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.fail("docker CLI not found: run the suite through scripts/test")
    probe = subprocess.run([docker, "info"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.fail("dockerd is not running: run the suite through scripts/test")
    return docker


@pytest.fixture(scope="session")
def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (loop devices, mounts): run it through scripts/test")
