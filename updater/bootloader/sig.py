"""``pieeprom.sig``: the SHA-256 of ``pieeprom.upd`` that recovery.bin and the bootloader check.

rpi-eeprom's ``rpi-eeprom-digest`` writes the hex digest on the first line, then ``ts: <unix
time>`` and, from newer versions, ``target-soc: 2711|2712`` and an optional ``rsa2048:``
signature; the Raspberry Pi documentation says more fields may follow. The digest guards
against file-system corruption, not tampering: the fleet's trust in the image comes from TUF
(``updater.bootloader.release``). Loaded strictly: at most 4 KiB, known fields once each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from updater.bootloader.output import ascii_text
from updater.errors import BootloaderError

MAX_BYTES = 4096
_DIGEST = re.compile(r"[0-9a-f]{64}")
_FIELDS = {
    "ts": re.compile(r"\d{1,10}"),
    "target-soc": re.compile(r"271[12]"),
    "rsa2048": re.compile(r"[0-9a-f]{512}"),
}


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


def load(data: bytes) -> EepromSig:
    lines = ascii_text(data, what="pieeprom.sig holds", limit=MAX_BYTES).splitlines()
    if not lines or not _DIGEST.fullmatch(lines[0].strip()):
        raise BootloaderError("pieeprom.sig does not start with a SHA-256 in lower-case hex")
    fields: dict[str, str] = {}
    for line in (line.strip() for line in lines[1:]):
        if not line:
            continue
        key, sep, value = line.partition(": ")
        if not sep or key not in _FIELDS or not _FIELDS[key].fullmatch(value):
            raise BootloaderError(f"pieeprom.sig has a malformed line: {line[:60]!r}")
        if key in fields:
            raise BootloaderError(f"pieeprom.sig names {key} twice")
        fields[key] = value
    return EepromSig(
        sha256=lines[0].strip(),
        timestamp=int(fields["ts"]) if "ts" in fields else None,
        target_soc=fields.get("target-soc"),
    )
