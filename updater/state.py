"""The persisted update state on /data: one JSON file, replaced atomically before each step.

The daemon saves the state it is *entering* before doing that state's side effect, so a
reboot or power cut at any point resumes exactly there (Mender's rule).
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleetcore.atomic import atomic_write
from fleetcore.errors import FormatError
from fleetcore.layout import Slot
from fleetcore.persisted import FileFormat, dump, load, set_aside
from fleetcore.version import Version
from fleetcore.wire import UpdateState
from updater.errors import UpdateStateError
from updater.space import Reserve, write_through

log = logging.getLogger(__name__)


# Format 1.0 (release 0.1.0's, written without a format key): see fleetcore.persisted.
FORMAT = FileFormat(1, 0)
# Fields release 0.1.0 does not know (it refuses unknown fields), written only when set. They
# are set only between a pre-stage hint or an admission and the trial request, never while
# the trial runs, so the 0.1.0 slot a failed trial falls back to never sees them.
ONLY_WHEN_SET = ("staging_from", "from_staged", "restaged")


class UpdaterState(BaseModel):
    # Unknown fields are ignored: after an A/B fallback an older updater reads what a newer
    # one wrote; only a newer major format is refused (and set aside).
    model_config = ConfigDict(extra="ignore")

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
    staging_from: UpdateState | None = Field(
        default=None,
        description="while a pre-stage hint is installed (ADR 0082): the state to return to "
        "once the slot verified, instead of asking for the trial; what the heartbeat reports",
    )
    from_staged: bool = Field(
        default=False, description="verifying a staged slot on admission: a failure reinstalls"
    )
    restaged: str | None = Field(
        default=None, description="why an admitted staged slot is installed again"
    )

    def attempts(self, version: Version) -> int:
        return self.trial_attempts.get(str(version), 0)

    def is_bad(self, version: Version) -> bool:
        return version in self.bad_versions

    @property
    def reported(self) -> UpdateState:
        """The state the heartbeat reports: staging is not an install the Overlord started."""
        return self.staging_from or self.state


class StateStore:
    """Load and save :class:`UpdaterState`; ``on_save`` lets tests cut power after a save.

    A file that cannot be read as a state (corrupt, truncated, or in a newer major format)
    is set aside as ``state.json.unreadable-<time>`` and the device starts from idle: the
    firmware still knows which slot is committed, so nothing unsafe follows, and an agent
    that crashed on the file at every start would never heartbeat again.
    ``quarantined`` names the set-aside file until the agent has reported it.
    Saves go through the /data space ``reserve`` (:mod:`updater.space`) when one is given.
    """

    def __init__(self, path: Path, *, reserve: Reserve | None = None) -> None:
        self.path = path
        self.reserve = reserve
        self.quarantined: tuple[Path, str] | None = None

    def load(self) -> UpdaterState:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return UpdaterState()
        except OSError as err:
            raise UpdateStateError(f"cannot read {self.path}: {err.strerror}") from err
        try:
            return UpdaterState.model_validate(load(raw, current=FORMAT, what=str(self.path)))
        except (FormatError, ValidationError) as err:
            return self._quarantine(err)

    def _quarantine(self, err: Exception) -> UpdaterState:
        reason = _first_line(err)
        try:
            aside = set_aside(self.path)
        except OSError as move:
            raise UpdateStateError(
                f"{self.path} is unreadable ({reason}) and cannot be set aside: {move.strerror}",
                hint="remove it; the device then starts over from idle",
            ) from err
        log.error("state: %s is unreadable (%s); set aside as %s", self.path, reason, aside.name)
        self.quarantined = (aside, reason)
        return UpdaterState()

    def save(self, state: UpdaterState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fields = state.model_dump(mode="json")
        for key in ONLY_WHEN_SET:
            if not fields[key]:
                del fields[key]
        data = dump(fields, current=FORMAT)
        write_through(self.reserve, lambda: atomic_write(self.path, data))
        log.info("state: %s (target %s)", state.state.value, state.target_version)
        self.after_save(state)

    def after_save(self, state: UpdaterState) -> None:
        """Hook called after every durable save; the power-cut tests override it."""


def _first_line(err: Exception) -> str:
    """A short reason without input values (pydantic quotes them)."""
    if isinstance(err, ValidationError):
        first = err.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc']) or 'top level'}: {first['msg']}"
    return str(err).splitlines()[0][:200]
