"""``vcgencmd bootloader_version``: the running bootloader's build, strictly parsed.

The firmware prints (rpi-eeprom's ``rpi-bootloader-version`` prints the same from the device
tree, and ``rpi-eeprom-update`` reads the ``timestamp`` line):

    2023/05/11 06:26:03
    version 4fd8f1f3c6b2fd2b4ad5b4b2f0d6e38c1c3d7d3e (release)
    timestamp 1683786363
    update-time 1684238567
    capabilities 0x0000007f

The first line is the build date (UTC), ``timestamp`` the same instant in seconds: the version.
``update-time`` (when the EEPROM was last written) and ``capabilities`` are optional; a
``timestamp`` of 0 comes from the first production bootloader, which predates the field.
Anything else (an unknown line, a date that disagrees with the timestamp, more than 4 KiB) is
hostile or from a firmware this updater does not know, and is refused with one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from fleetcore.eeprom import ascii_text
from updater.errors import BootloaderError

MAX_OUTPUT = 4096
# rpi-eeprom-update's BOOTLOADER_FIRST_VERSION: the first production release, which reports 0.
FIRST_VERSION = 1557513636
_DATE = re.compile(r"(\d{4})/(\d{2})/(\d{2}) (\d{2}):(\d{2}):(\d{2})")
_LINE = re.compile(r"([a-z-]+) (.{1,200})")
_FIELDS = {
    "version": re.compile(r"[0-9a-f]{7,40}( \([a-z-]{1,16}\))?"),
    "timestamp": re.compile(r"\d{1,10}"),
    "update-time": re.compile(r"\d{1,10}"),
    "capabilities": re.compile(r"0x[0-9a-f]{1,8}"),
}


@dataclass(frozen=True)
class BootloaderVersion:
    timestamp: int
    git_hash: str | None = None
    update_time: int | None = None
    capabilities: int | None = None


def parse(output: bytes) -> BootloaderVersion:
    """The version in ``vcgencmd bootloader_version``'s output, or :class:`BootloaderError`."""
    text = ascii_text(
        output, what="bootloader_version printed", limit=MAX_OUTPUT, error=BootloaderError
    )
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise BootloaderError("bootloader_version printed nothing")
    built = _date(lines[0])
    fields: dict[str, str] = {}
    for line in lines[1:]:
        match = _LINE.fullmatch(line)
        if match is None or match.group(1) not in _FIELDS:
            raise BootloaderError(f"bootloader_version printed an unknown line: {line[:60]!r}")
        key, value = match.groups()
        if key in fields:
            raise BootloaderError(f"bootloader_version printed {key} twice")
        if not _FIELDS[key].fullmatch(value):
            raise BootloaderError(f"bootloader_version printed a malformed {key}: {value[:60]!r}")
        fields[key] = value
    timestamp = int(fields["timestamp"]) if "timestamp" in fields else built
    if timestamp == 0:
        timestamp = FIRST_VERSION
    elif timestamp != built:
        raise BootloaderError(
            f"bootloader_version's date {lines[0]} disagrees with its timestamp {timestamp}"
        )
    return BootloaderVersion(
        timestamp=timestamp,
        git_hash=fields["version"].split(" ")[0] if "version" in fields else None,
        update_time=int(fields["update-time"]) if "update-time" in fields else None,
        capabilities=int(fields["capabilities"], 16) if "capabilities" in fields else None,
    )


def _date(line: str) -> int:
    match = _DATE.fullmatch(line)
    if match is None:
        raise BootloaderError(f"bootloader_version's first line is not a date: {line[:60]!r}")
    try:
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        built = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as err:
        raise BootloaderError(f"bootloader_version's date is impossible: {line}") from err
    return int(built.timestamp())
