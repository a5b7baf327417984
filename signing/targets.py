"""Target names and the custom metadata every Metrica Fleet target carries.

The custom metadata sits under ``custom.metrica`` in targets.json, so a stock TUF client
ignores it and ours validates it strictly.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleetcore.release import Hardware, Sha256
from fleetcore.version import Version
from fleetcore.zstdcap import CappedZstdReader, ZstdBombError
from signing.errors import RepositoryError, VerificationError

CUSTOM_KEY = "metrica"
_NAME_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_READ_SIZE = 1 << 20
# Streamed and hashed, never held: the cap only stops a bomb from hashing forever.
MAX_PAYLOAD_SIZE = 64 << 30


class TargetKind(StrEnum):
    OS = "os"
    ROLE = "role"
    BOOTLOADER = "bootloader"  # an EEPROM bootloader (fleetcore.eeprom)


class TargetCustom(BaseModel):
    """What a device needs to know about a target before it trusts the bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: TargetKind
    version: Version
    hardware: tuple[Hardware, ...] = Field(min_length=1)
    uncompressed_size: int = Field(ge=0)
    uncompressed_sha256: Sha256
    version_floor: Version | None = None
    # The oldest updater that may install it (a bootloader release needs the updater that
    # knows how to stage it); omitted: any.
    min_updater_version: Version | None = None

    def to_custom(self) -> dict[str, Any]:
        return {CUSTOM_KEY: self.model_dump(mode="json", exclude_none=True)}

    @classmethod
    def from_custom(cls, custom: object, *, target: str) -> TargetCustom | None:
        """Parse ``custom`` of a TargetFile; ``None`` when the target has no Metrica fields."""
        if not isinstance(custom, dict) or CUSTOM_KEY not in custom:
            return None
        try:
            return cls.model_validate(custom[CUSTOM_KEY])
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise VerificationError(
                f"target {target}: invalid custom metadata at {where}: {first['msg']}"
            ) from err


@dataclass(frozen=True)
class TargetSpec:
    """A file to publish as target ``name``, with optional custom metadata."""

    path: Path
    name: str
    custom: TargetCustom | None = None


def check_target_name(name: str) -> str:
    """Reject names that could escape ``targets/`` or be misread: ``os/1.0.0/manifest.json``."""
    parts = name.split("/")
    if not name or any(not _NAME_PART.fullmatch(p) or p in {".", ".."} for p in parts):
        raise RepositoryError(
            f"invalid target name {name!r}",
            hint="use slash-separated parts of letters, digits, '.', '_', '+', '-'",
        )
    return name


def payload_digest(path: Path) -> tuple[int, str]:
    """Size and SHA-256 of the payload: the decompressed stream for ``.zst``, else the file."""
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as raw:
            if path.suffix == ".zst":
                reader = CappedZstdReader(raw, limit=MAX_PAYLOAD_SIZE, what=str(path))
                while block := reader.read(_READ_SIZE):
                    digest.update(block)
                    size += len(block)
            else:
                while block := raw.read(_READ_SIZE):
                    digest.update(block)
                    size += len(block)
    except ZstdBombError as err:
        raise RepositoryError(str(err)) from err
    except OSError as err:
        raise RepositoryError(f"cannot read {path}: {err.strerror}") from err
    return size, digest.hexdigest()
