"""Every benchmark under bench/ still starts: its imports resolve and its options parse.

The benches are run by hand, so nothing else would notice one that no longer imports (as
bench_rollout.py did after a helper it imported moved to simulator.site).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(BENCH.glob("bench_*.py"))  # load_baseline.py is an app they serve


def test_there_are_benchmarks():
    assert len(SCRIPTS) >= 5


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_benchmark_starts(script: Path):
    answer = subprocess.run(
        [sys.executable, str(script), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert answer.returncode == 0, answer.stderr[-2000:]
    assert "usage:" in answer.stdout


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_benchmark_keeps_its_figures(script: Path):
    """Each bench's last figures are committed beside it (bench/README.md)."""
    results = BENCH / "results" / f"{script.stem}.txt"
    assert results.is_file(), f"{script.name} has no {results.relative_to(BENCH.parent)}"
    assert results.read_text().strip(), f"{results.name} is empty"
