"""What a failed scenario prints: every board's boot decisions and its serial console."""

from __future__ import annotations

from collections.abc import Iterable

from harness.board import SimulatedPi


def failure_sections(boards: Iterable[SimulatedPi]) -> list[tuple[str, str]]:
    """(title, text) pairs for pytest's report, one pair of sections per board."""
    sections = []
    for board in boards:
        sections.append((f"boot decisions ({board.disk.name})", board.decisions()))
        sections.append((f"serial console ({board.console_log})", board.console()))
    return sections
