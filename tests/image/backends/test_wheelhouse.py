"""The image's aarch64 wheelhouse: builds from one source tree take turns."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from image.backends import wheelhouse
from image.backends.base import SOURCE_ROOT


@pytest.mark.integration  # pip downloads the device extra's aarch64 wheels from PyPI
def test_two_builds_at_once_both_succeed(tmp_path: Path):
    """pip builds the project in its source tree; two image builds at once (the QEMU tier's
    two runs) failed with "Failed to build one or more wheels" before the lock."""
    dests = [tmp_path / "a", tmp_path / "b"]
    for dest in dests:
        dest.mkdir()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(wheelhouse.build, dests))
    for dest in dests:
        names = sorted(p.name for p in dest.glob("*.whl"))
        assert any(n.startswith("metrica_fleet-") for n in names), names
        assert any(n.startswith("wsproto-") for n in names), names
    assert wheelhouse.source_lock().parent != SOURCE_ROOT
