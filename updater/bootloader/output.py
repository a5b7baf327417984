"""The first check on anything a bootloader tool prints or a release carries: bounded ASCII."""

from __future__ import annotations

from updater.errors import BootloaderError


def ascii_text(data: bytes, *, what: str, limit: int) -> str:
    """``data`` as text, or :class:`BootloaderError` when it is over ``limit`` bytes or not
    ASCII (``what`` names it: "bootloader_version printed", "pieeprom.sig holds")."""
    if len(data) > limit:
        raise BootloaderError(f"{what} more than {limit} bytes")
    try:
        return data.decode("ascii")
    except UnicodeDecodeError as err:
        raise BootloaderError(f"{what} non-ASCII bytes") from err
