"""Versioned JSON files on the device's /data, readable across an A/B fallback.

After a fallback the older updater reads what the newer one wrote, so every persisted device
format carries a format version ``MAJOR.MINOR`` under the key ``format``:

- a minor bump only adds optional fields; readers ignore fields they do not know;
- a major bump changes the meaning of existing fields; a reader refuses a newer major with
  :class:`FormatTooNew` (its caller quarantines the file and starts that part afresh).

Format 1.0 is what release 0.1.0 wrote, without the key. Its readers forbid unknown keys, so
files in format 1.0 are still written without the key: a device that falls back to 0.1.0
reads them.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetcore import strictjson
from fleetcore.atomic import fsync_dir
from fleetcore.errors import FormatError

FORMAT_KEY = "format"
_SPELLING = re.compile(r"([1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})")


class FormatTooNew(FormatError):
    """A file was written in a newer major format than this reader knows."""


@dataclass(frozen=True, order=True)
class FileFormat:
    major: int
    minor: int

    @classmethod
    def parse(cls, text: object, *, what: str) -> FileFormat:
        match = _SPELLING.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise FormatError(f"{what}: format {str(text)[:32]!r} is not MAJOR.MINOR")
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


LEGACY = FileFormat(1, 0)


def load(data: bytes, *, current: FileFormat, what: str) -> dict[str, Any]:
    """The fields of a versioned file, without its ``format`` key.

    Raises :class:`FormatTooNew` for a newer major and :class:`FormatError` for anything
    that is not a JSON object with a valid format.
    """
    doc = strictjson.loads(data, what=what)
    if not isinstance(doc, dict):
        raise FormatError(f"{what} is not a JSON object")
    found = FileFormat.parse(doc.pop(FORMAT_KEY), what=what) if FORMAT_KEY in doc else LEGACY
    if found.major > current.major:
        raise FormatTooNew(
            f"{what} is in format {found}, newer than the {current.major}.x this version reads",
            hint="a newer release wrote it; it is set aside and this part starts afresh",
        )
    return doc


def dump(fields: dict[str, Any], *, current: FileFormat) -> bytes:
    """Serialise ``fields`` with the format key (none for format 1.0, as 0.1.0 wrote it)."""
    doc = dict(fields)
    if current != LEGACY:
        doc[FORMAT_KEY] = str(current)
    return json.dumps(doc, sort_keys=True, indent=1).encode()


def set_aside(path: Path) -> Path:
    """Rename an unusable file to ``<name>.unreadable-<epoch>`` (kept for diagnosis), durably.

    Raises :class:`OSError` if the rename fails; the caller decides whether that is fatal.
    """
    aside = path.with_name(f"{path.name}.unreadable-{int(time.time())}")
    path.replace(aside)
    fsync_dir(path.parent)
    return aside
