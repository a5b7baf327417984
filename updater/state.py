"""The persisted update state on /data: one JSON file, replaced atomically before each step.

The daemon saves the state it is *entering* before doing that state's side effect, so a
reboot or power cut at any point resumes exactly there (Mender's rule).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleetcore.atomic import atomic_write
from fleetcore.version import Version
from fleetcore.wire import Slot, UpdateState
from updater.errors import StateError

log = logging.getLogger(__name__)


class UpdaterState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: UpdateState = UpdateState.IDLE
    target_version: Version | None = None
    target_slot: Slot | None = None
    source: str | None = Field(default=None, description="release repository URL or directory")
    target_floor: Version | None = None
    slot_versions: dict[Slot, Version] = Field(
        default_factory=dict, description="verified contents of each slot"
    )
    version_floor: Version | None = None
    trial_attempts: dict[str, int] = Field(default_factory=dict)
    bad_versions: list[Version] = Field(default_factory=list)
    last_failure: str | None = None
    rollback_unreported: bool = False
    reboot_boot_id: str | None = Field(
        default=None, description="boot id when a reboot was requested, to tell it happened"
    )
    trial_boot_id: str | None = None
    trial_deadline: float | None = Field(default=None, description="epoch seconds")

    def attempts(self, version: Version) -> int:
        return self.trial_attempts.get(str(version), 0)

    def is_bad(self, version: Version) -> bool:
        return version in self.bad_versions


class StateStore:
    """Load and save :class:`UpdaterState`; ``on_save`` lets tests cut power after a save."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> UpdaterState:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return UpdaterState()
        except OSError as err:
            raise StateError(f"cannot read {self.path}: {err.strerror}") from err
        try:
            return UpdaterState.model_validate(json.loads(raw))
        except (ValueError, ValidationError) as err:
            raise StateError(
                f"{self.path} is corrupt: {err}",
                hint="inspect it; removing it makes the device start over from idle",
            ) from err

    def save(self, state: UpdaterState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(state.model_dump(mode="json"), sort_keys=True, indent=1).encode()
        atomic_write(self.path, data)
        log.info("state: %s (target %s)", state.state.value, state.target_version)
        self.after_save(state)

    def after_save(self, state: UpdaterState) -> None:
        """Hook called after every durable save; the power-cut tests override it."""
