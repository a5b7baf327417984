"""Fixtures for real services shared by every tier.

Integration tests never skip for a missing service: ``scripts/test`` starts PostgreSQL and
dockerd, and a test that cannot reach them fails with a message saying how to start them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest

PI_GEN_SOURCES = ("FLEET_PI_GEN_DIR", "FLEET_PI_GEN_GIT")


def pytest_configure(config: pytest.Config) -> None:
    """Give Ctrl-C back to the processes the tests start, when pytest runs as a background
    job (``scripts/test &``, ``nohup``): a non-interactive shell starts those with SIGINT
    ignored, and an ignored signal is inherited across exec, so ``fleetctl logs -f`` or
    ``fleetctl forward`` would never see the SIGINT the tests send for Ctrl-C. A handler is
    not inherited: the children start with SIGINT at its default."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the ``pigen`` tests when no pi-gen checkout is named.

    pi-gen lives on GitHub, which CI here cannot reach (only PyPI and Debian's archive); the
    pi-gen build host's workflow (pi-gen-config/ci/build.yml) names a checkout and runs them.
    """
    if any(os.environ.get(name) for name in PI_GEN_SOURCES):
        return
    chosen = [item for item in items if item.get_closest_marker("pigen") is None]
    dropped = [item for item in items if item.get_closest_marker("pigen") is not None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = chosen
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"deselected {len(dropped)} pigen test(s): set FLEET_PI_GEN_DIR to a pi-gen "
                "checkout (branch bookworm-arm64) or FLEET_PI_GEN_GIT to a clone URL to run them"
            )


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
