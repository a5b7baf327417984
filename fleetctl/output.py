"""What fleetctl prints: tables for people, JSON for scripts, progress lines on stderr.

Every string in a table came from the server; control characters (a terminal escape in a
hostname, say) are replaced before printing, so an answer cannot repaint the operator's
terminal. JSON output escapes them by itself.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

_MAX_CELL = 80


def cell(value: object) -> str:
    """One table cell: None as '-', mappings as k=v, lists comma-joined, made printable."""
    if value is None:
        text = "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, Mapping):
        text = ",".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
    elif isinstance(value, list | tuple):
        text = ",".join(str(v) for v in value) or "-"
    else:
        text = str(value)
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…"


@dataclass(frozen=True)
class Column:
    header: str
    key: str


def columns(*pairs: tuple[str, str]) -> list[Column]:
    return [Column(header, key) for header, key in pairs]


@dataclass
class Printer:
    """Prints one command's result as a table or as JSON (``--json``)."""

    as_json: bool
    out: TextIO = field(default_factory=lambda: sys.stdout)

    def data(self, value: Any) -> None:
        self.out.write(json.dumps(value, indent=2, sort_keys=True) + "\n")

    def table(self, rows: Sequence[Mapping[str, Any]], cols: Sequence[Column]) -> None:
        """Rows as a table, or the rows themselves with ``--json``."""
        if self.as_json:
            self.data(list(rows))
            return
        grid = [[c.header for c in cols]] + [[cell(row.get(c.key)) for c in cols] for row in rows]
        widths = [max(len(line[i]) for line in grid) for i in range(len(cols))]
        for line in grid:
            self.out.write("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)))
            self.out.write("\n")

    def record(self, value: Mapping[str, Any], keys: Iterable[str] | None = None) -> None:
        """One object as 'key: value' lines, or the whole object with ``--json``."""
        if self.as_json:
            self.data(value)
            return
        keys = list(keys) if keys is not None else list(value)
        width = max((len(k) for k in keys), default=0)
        for key in keys:
            self.out.write(f"{key.ljust(width)}  {cell(value.get(key))}\n")

    def message(self, text: str) -> None:
        """A confirmation for people; with ``--json`` the command prints its data instead."""
        if not self.as_json:
            self.out.write(cell_line(text) + "\n")


def cell_line(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


class Progress:
    """A progress line on stderr: rewritten in place on a terminal, new lines when it changes
    otherwise (so a CI log gets one line per step, not one per poll)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self._last = ""

    def show(self, text: str) -> None:
        text = cell_line(text)
        if text == self._last:
            return
        self._last = text
        if self.live:
            self.stream.write("\r\x1b[2K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.live and self._last:
            self.stream.write("\n")
            self.stream.flush()


class ByteProgress:
    """Upload progress in whole percent (tenths on a terminal would flood a CI log)."""

    def __init__(self, label: str, total: int, progress: Progress) -> None:
        self.label = label
        self.total = max(total, 1)
        self.sent = 0
        self.progress = progress
        self._step = 1 if progress.live else 10

    def add(self, count: int) -> None:
        self.sent += count
        percent = min(100, self.sent * 100 // self.total) // self._step * self._step
        self.progress.show(f"{self.label}: {percent}% of {human_bytes(self.total)}")


def human_bytes(count: int) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    size, unit = float(count), 0
    while size >= 1024 and unit < len(units) - 1:
        size, unit = size / 1024, unit + 1
    return f"{count} B" if unit == 0 else f"{size:.1f} {units[unit]}"
