"""rpi-eeprom's files: an EEPROM image (``pieeprom-*.bin``) and its ``pieeprom.sig``.

Shared by ``fleet-sign add-bootloader`` (which checks what it signs) and the updater (which
checks what it stages), with the same rules as rpi-eeprom's tools:

- the image is exactly the board's flash: 512 KiB on the Pi 4's BCM2711, 2 MiB on the Pi 5's
  BCM2712 (``rpi-eeprom-config`` rejects any other size);
- its version is the ``BUILD_TIMESTAMP=`` string inside (``rpi-eeprom-update`` greps it);
- a BCM2712 image that supports the A/B EEPROM carries a ``bootsys`` file at 0x10008
  (``isABCapableImage``), and ``rpi-eeprom-ab`` takes it without its first 64 KiB (the
  read-only section): 1011712 bytes;
- ``pieeprom.sig`` (``rpi-eeprom-digest``) holds the image's hex SHA-256 on its first line,
  then ``ts: <unix time>``, optionally ``target-soc: 2711|2712`` and ``rsa2048: <hex>``; the
  Raspberry Pi documentation says more fields may follow. It guards against file-system
  corruption, not tampering: trust comes from TUF.

A bootloader release's fleet version (TUF custom ``version``) is its build instant as
``YEAR.MONTH.DAY.SECOND-OF-DAY`` in UTC (``2024.4.15.47534`` is 2024-04-15 13:12:14): a
dotted version the rest of the fleet orders and prints, one-to-one with the timestamp.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fleetcore.errors import FleetError, FormatError
from fleetcore.release import Hardware
from fleetcore.version import Version

IMAGE_SIZE = {Hardware.PI4: 512 * 1024, Hardware.PI5: 2 * 1024 * 1024}
SOC = {Hardware.PI4: "2711", Hardware.PI5: "2712"}
AB_PARTITION_OFFSET = 64 * 1024
AB_PARTITION_SIZE = 1011712
SIG_MAX_BYTES = 4096
_BUILD_TIMESTAMP = re.compile(rb"BUILD_TIMESTAMP=(\d{1,10})(?!\d)")
_AB_MARKER_OFFSET = 0x10008
_DIGEST = re.compile(r"[0-9a-f]{64}")
_SIG_FIELDS = {
    "ts": re.compile(r"\d{1,10}"),
    "target-soc": re.compile(r"271[12]"),
    "rsa2048": re.compile(r"[0-9a-f]{512}"),
}
_DAY = 86400


class EepromFormatError(FormatError):
    """An EEPROM image or its sig is not what a board of the family takes."""


def ascii_text(
    data: bytes, *, what: str, limit: int, error: type[FleetError] = EepromFormatError
) -> str:
    """``data`` as text, or ``error`` when it is over ``limit`` bytes or not ASCII (``what``
    names it: "bootloader_version printed", "pieeprom.sig holds")."""
    if len(data) > limit:
        raise error(f"{what} more than {limit} bytes")
    try:
        return data.decode("ascii")
    except UnicodeDecodeError as err:
        raise error(f"{what} non-ASCII bytes") from err


@dataclass(frozen=True)
class EepromImage:
    data: bytes
    family: Hardware
    timestamp: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def ab_capable(self) -> bool:
        marker = self.data[_AB_MARKER_OFFSET : _AB_MARKER_OFFSET + 8]
        return marker.rstrip(b"\0") == b"bootsys"

    def ab_partition(self) -> bytes:
        """What ``rpi-eeprom-ab update`` writes: the image past its read-only section."""
        return self.data[AB_PARTITION_OFFSET : AB_PARTITION_OFFSET + AB_PARTITION_SIZE]


def load_image(data: bytes, family: Hardware) -> EepromImage:
    """The image for a board of ``family``, or :class:`EepromFormatError` saying why not."""
    size = IMAGE_SIZE.get(family)
    if size is None:
        raise EepromFormatError(f"a {family.value} board has no EEPROM bootloader")
    if len(data) != size:
        other = next((f for f, s in IMAGE_SIZE.items() if s == len(data)), None)
        built_for = f" (the {other.value} flash size)" if other else ""
        raise EepromFormatError(
            f"the EEPROM image is {len(data)} bytes{built_for}; a {family.value} board's "
            f"flash takes {size}"
        )
    stamps = {int(m.group(1)) for m in _BUILD_TIMESTAMP.finditer(data)}
    if len(stamps) != 1:
        what = "no" if not stamps else "more than one"
        raise EepromFormatError(f"the EEPROM image has {what} BUILD_TIMESTAMP")
    return EepromImage(data=data, family=family, timestamp=stamps.pop())


@dataclass(frozen=True)
class EepromSig:
    sha256: str
    timestamp: int | None = None
    target_soc: str | None = None

    def dump(self) -> bytes:
        lines = [self.sha256]
        if self.timestamp is not None:
            lines.append(f"ts: {self.timestamp}")
        if self.target_soc is not None:
            lines.append(f"target-soc: {self.target_soc}")
        return ("\n".join(lines) + "\n").encode()


def sig_for(image: EepromImage) -> EepromSig:
    """The sig rpi-eeprom-digest writes, its ``ts`` the build time (reproducible)."""
    return EepromSig(image.sha256, image.timestamp, SOC[image.family])


def load_sig(data: bytes) -> EepromSig:
    lines = ascii_text(data, what="pieeprom.sig holds", limit=SIG_MAX_BYTES).splitlines()
    if not lines or not _DIGEST.fullmatch(lines[0].strip()):
        raise EepromFormatError("pieeprom.sig does not start with a SHA-256 in lower-case hex")
    fields: dict[str, str] = {}
    for line in (line.strip() for line in lines[1:]):
        if not line:
            continue
        key, sep, value = line.partition(": ")
        if not sep or key not in _SIG_FIELDS or not _SIG_FIELDS[key].fullmatch(value):
            raise EepromFormatError(f"pieeprom.sig has a malformed line: {line[:60]!r}")
        if key in fields:
            raise EepromFormatError(f"pieeprom.sig names {key} twice")
        fields[key] = value
    return EepromSig(
        sha256=lines[0].strip(),
        timestamp=int(fields["ts"]) if "ts" in fields else None,
        target_soc=fields.get("target-soc"),
    )


def check_pair(image: EepromImage, sig: EepromSig) -> None:
    """The sig must name the image's digest (and its SoC, when it names one)."""
    if sig.sha256 != image.sha256:
        raise EepromFormatError("pieeprom.sig does not match the EEPROM image")
    if sig.target_soc is not None and sig.target_soc != SOC[image.family]:
        raise EepromFormatError(
            f"pieeprom.sig is for BCM{sig.target_soc}, a {image.family.value} board is "
            f"BCM{SOC[image.family]}"
        )


def release_version(timestamp: int) -> Version:
    """The fleet version of a bootloader built at ``timestamp``: ``2024.4.15.47534``."""
    built = datetime.fromtimestamp(timestamp, UTC)
    return Version(f"{built.year}.{built.month}.{built.day}.{timestamp % _DAY}")


def release_timestamp(version: Version) -> int:
    """The build timestamp a bootloader release's version stands for (the inverse)."""
    parts = [int(part) for part in str(version).split(".")]
    if len(parts) != 4 or parts[3] >= _DAY:
        raise EepromFormatError(f"{version} is not a bootloader version (year.month.day.second)")
    try:
        day = datetime(parts[0], parts[1], parts[2], tzinfo=UTC)
    except ValueError as err:
        raise EepromFormatError(f"{version} is not a bootloader version: {err}") from err
    return int((day + timedelta(seconds=parts[3])).timestamp())


# The simulated firmware's EEPROM (the QEMU harness and the fleet simulator play a board's
# bootloader with these; a real board has its ROM, recovery.bin and vcgencmd).


def recovery_flash(
    current: EepromImage, upd: bytes | None, sig: bytes | None
) -> tuple[EepromImage, str]:
    """What the boot ROM's ``recovery.bin`` does with the update staged on the config
    partition at power-on: the EEPROM afterwards (the new image only when ``pieeprom.upd``
    is an image for the board that ``pieeprom.sig`` names), and one line saying what happened."""
    if upd is None or sig is None:
        return current, "recovery.bin: no pieeprom.upd with its pieeprom.sig; EEPROM unchanged"
    try:
        new = load_image(upd, current.family)
        check_pair(new, load_sig(sig))
    except EepromFormatError as err:
        return current, f"recovery.bin refused pieeprom.upd: {err}; EEPROM unchanged"
    return new, (
        f"recovery.bin flashed the EEPROM: {_utc(current.timestamp)} -> {_utc(new.timestamp)}"
    )


def version_output(image: EepromImage, *, update_time: int = 0) -> bytes:
    """``vcgencmd bootloader_version`` as the firmware prints it for ``image``."""
    return (
        f"{datetime.fromtimestamp(image.timestamp, UTC):%Y/%m/%d %H:%M:%S}\n"
        # A git hash in the real output; the image's digest cut to its length here.
        f"version {image.sha256[:40]} (release)\n"
        f"timestamp {image.timestamp}\n"
        f"update-time {update_time}\n"
        "capabilities 0x0000007f\n"
    ).encode()


def _utc(timestamp: int) -> str:
    return f"{datetime.fromtimestamp(timestamp, UTC):%Y-%m-%d %H:%M:%S}"
