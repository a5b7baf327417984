"""``rpi-eeprom-config``'s output: the running bootloader's configuration, strictly parsed.

With no arguments the tool prints the configuration the running bootloader uses (its
``blconfig`` nvmem copy, else ``vcgencmd bootloader_config``), in config.txt's syntax:
``[filter]`` sections, ``KEY=value`` lines, ``#`` comments. The fleet reads two settings:

- ``BOOT_ORDER``: the boot modes, one nibble each, tried from the lowest (``0xf41``: SD, then
  USB, then again). Absent: the bootloader's default, shown as unknown.
- ``SIGNED_BOOT``: ``1`` when the bootloader verifies ``boot.img`` against ``boot.sig``
  (secure boot), which raises the minimum bootloader version (``fleetcore.bootloader``).

Only settings outside conditional sections (before any section, or under ``[all]``) count:
what a ``[cm4]`` or ``[gpio4=1]`` section sets depends on the moment. A line that is none of
the above, a value that is not what the setting allows, or more than 16 KiB is refused with
one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fleetcore.eeprom import ascii_text
from updater.errors import BootloaderError

MAX_OUTPUT = 16384
_SECTION = re.compile(r"\[([^\[\]]{1,64})\]")
_SETTING = re.compile(r"([A-Za-z0-9_]{1,64})=([\x20-\x7e]{0,256})")
_BOOT_ORDER = re.compile(r"0x[0-9a-fA-F]{1,8}")


@dataclass(frozen=True)
class EepromSettings:
    boot_order: str | None  # lower-case hex, as the setting reads
    secure_boot: bool


def parse(output: bytes) -> EepromSettings:
    """The settings that matter in ``rpi-eeprom-config``'s output, or :class:`BootloaderError`."""
    text = ascii_text(
        output, what="rpi-eeprom-config printed", limit=MAX_OUTPUT, error=BootloaderError
    )
    unconditional = True
    found: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        section = _SECTION.fullmatch(line)
        if section is not None:
            unconditional = section.group(1).strip().lower() == "all"
            continue
        setting = _SETTING.fullmatch(line)
        if setting is None:
            raise BootloaderError(
                f"rpi-eeprom-config line {number} is not a setting: {line[:60]!r}"
            )
        if unconditional:
            found[setting.group(1)] = setting.group(2).strip()
    return EepromSettings(
        boot_order=_boot_order(found.get("BOOT_ORDER")),
        secure_boot=_flag("SIGNED_BOOT", found.get("SIGNED_BOOT")),
    )


def _boot_order(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not _BOOT_ORDER.fullmatch(value):
        raise BootloaderError(
            f"rpi-eeprom-config: BOOT_ORDER={value[:40]} is not 0x and 1-8 hex digits"
        )
    return value.lower()


def _flag(name: str, value: str | None) -> bool:
    if value is None or value == "0":
        return False
    if value == "1":
        return True
    raise BootloaderError(f"rpi-eeprom-config: {name}={value[:40]} is neither 0 nor 1")
