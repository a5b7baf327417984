"""autoboot.txt, the Raspberry Pi firmware's A/B boot selector: parse and render.

The firmware reads ``[section]`` headers and ``key=value`` lines; it ignores sections it does not
know. Only the two sections the fleet uses matter here: ``[all]`` names the committed boot
partition, ``[tryboot]`` the partition to try once when the tryboot flag is set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.errors import AutobootError

MAX_BYTES = 512
"""The firmware reads at most this much of autoboot.txt."""


@dataclass(frozen=True)
class Autoboot:
    sections: dict[str, dict[str, str]] = field(default_factory=dict)

    def boot_partition(self, section: str) -> int | None:
        """The ``boot_partition`` of ``section``, or None when the section does not set it."""
        raw = self.sections.get(section, {}).get("boot_partition")
        if raw is None:
            return None
        try:
            number = int(raw)
        except ValueError as err:
            raise AutobootError(f"[{section}] boot_partition={raw!r} is not a number") from err
        if number < 1:
            raise AutobootError(f"[{section}] boot_partition={number} is not a partition")
        return number


def parse(data: bytes) -> Autoboot:
    """Parse autoboot.txt; raise AutobootError for anything the firmware could not read."""
    if len(data) > MAX_BYTES:
        raise AutobootError(f"autoboot.txt is {len(data)} bytes, the firmware reads {MAX_BYTES}")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as err:
        raise AutobootError("autoboot.txt is not ASCII") from err
    sections: dict[str, dict[str, str]] = {}
    current = "all"
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise AutobootError(f"autoboot.txt line {number}: {line!r} is not key=value")
        sections.setdefault(current, {})[key.strip()] = value.strip()
    return Autoboot(sections)


def render(*, committed: int, trial: int) -> bytes:
    """The fleet's autoboot.txt: ``[all]`` boots ``committed``, a tryboot boots ``trial``."""
    return (
        f"[all]\ntryboot_a_b=1\nboot_partition={committed}\n[tryboot]\nboot_partition={trial}\n"
    ).encode("ascii")
