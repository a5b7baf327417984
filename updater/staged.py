"""The release staged in the inactive slot (``/data/fleet/staged.json``, ADR 0082).

Written once the slot verified after a pre-stage hint, before the state returns to what it
was; cleared when a trial is requested or another release is staged. It names the version,
the slot and the SHA-256 of the signed manifest kept in the install directory: admission
trusts the slot only while all three still match. An unreadable record is set aside and
read as nothing staged (the next hint stages again; nothing unsafe follows, since a staged
slot is re-verified before any trial anyway).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleetcore.atomic import atomic_write
from fleetcore.errors import FormatError
from fleetcore.layout import Slot
from fleetcore.persisted import FileFormat, dump, load, set_aside
from fleetcore.version import Version
from updater.release import MANIFEST_FILE

log = logging.getLogger(__name__)

FORMAT = FileFormat(1, 0)


class Staged(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Version
    slot: Slot
    manifest_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


def manifest_digest(install_dir: Path) -> str | None:
    """The SHA-256 of the stored manifest, or None when there is none."""
    try:
        return hashlib.sha256((install_dir / MANIFEST_FILE).read_bytes()).hexdigest()
    except OSError:
        return None


class StagedStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Staged | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return Staged.model_validate(load(raw, current=FORMAT, what=str(self.path)))
        except (FormatError, ValidationError) as err:
            aside = set_aside(self.path)
            reason = str(err).splitlines()[0][:200]
            log.error("staged: %s is unreadable (%s); set aside as %s", self.path, reason, aside)
            return None

    def save(self, staged: Staged) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, dump(staged.model_dump(mode="json"), current=FORMAT))

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
