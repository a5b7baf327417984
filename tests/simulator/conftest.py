"""Fixtures: a throw-away PostgreSQL database per test on the shared server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simulator.site import scratch_database


@pytest.fixture
def pg_database(pg_url: str) -> Iterator[str]:
    """A new, empty database (schema not yet made), dropped afterwards."""
    with scratch_database(pg_url, "simulator_test") as url:
        yield url
