"""The device <-> Overlord HTTP API (``/api/v1``), shared by both sides.

Requests a device sends are strict (unknown keys rejected by the Overlord); responses a device
reads ignore unknown keys, so a newer Overlord can add fields without breaking older devices.

Endpoints (device credential as ``Authorization: Bearer <device_token>``):

- ``POST /api/v1/devices/register``: :class:`RegisterRequest` -> :class:`RegisterResponse`
  (authenticated by the enrollment token inside the body instead).
- ``GET /api/v1/devices/{id}/desired-state``: -> :class:`DesiredState`, with ``ETag``;
  ``If-None-Match`` answers 304 when nothing changed.
- ``POST /api/v1/devices/{id}/heartbeat``: :class:`Heartbeat` -> 204.
- ``POST /api/v1/devices/{id}/events``: :class:`EventBatch` -> :class:`EventAck`.

The release repository (TUF metadata, targets and chunks) is served under ``/tuf/``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from fleetcore.bootloader import TrybootSupport
from fleetcore.bounded import (
    ConfigKey,
    ConfigValue,
    Count,
    DataKey,
    DataValue,
    FiniteFloat,
    UtcDatetime,
    text,
)
from fleetcore.layout import Slot
from fleetcore.release import Hardware
from fleetcore.version import Version

API_PREFIX = "/api/v1"
TUF_PREFIX = "/tuf"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore")


class UpdateState(StrEnum):
    """The updater's persisted state machine, reported in heartbeats."""

    IDLE = "idle"
    DOWNLOADING = "downloading"
    INSTALLING = "installing"
    VERIFYING = "verifying"
    TRIAL_REBOOT = "trial-reboot"
    TRIAL = "trial"
    COMMITTING = "committing"
    COMMITTED = "committed"
    ROLLED_BACK = "rolled-back"
    FAILED = "failed"


# An update under way: from the first download to the commit (the agent resumes these).
IN_PROGRESS_STATES = frozenset(
    {
        UpdateState.DOWNLOADING,
        UpdateState.INSTALLING,
        UpdateState.VERIFYING,
        UpdateState.TRIAL_REBOOT,
        UpdateState.TRIAL,
        UpdateState.COMMITTING,
    }
)
# The last update did not take: the device runs its previous version.
FAILED_STATES = frozenset({UpdateState.FAILED, UpdateState.ROLLED_BACK})


class Health(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


class EventKind(StrEnum):
    ENROLLED = "enrolled"
    UPDATE_AVAILABLE = "update-available"
    DOWNLOAD_PROGRESS = "download-progress"
    INSTALL_STARTED = "install-started"
    INSTALL_PROGRESS = "install-progress"
    INSTALL_FAILED = "install-failed"
    TRIAL_STARTED = "trial-started"
    UPDATE_COMMITTED = "update-committed"
    ROLLBACK = "rollback"
    VERSION_MARKED_BAD = "version-marked-bad"
    ROLE_APPLIED = "role-applied"
    ROLE_FAILED = "role-failed"
    ROLE_ROLLBACK = "role-rollback"
    SAFE_MODE_ENTERED = "safe-mode-entered"
    SAFE_MODE_LEFT = "safe-mode-left"
    TELEMETRY_DROPPED = "telemetry-dropped"
    AGENT_ERROR = "agent-error"  # the agent hit something unexpected and kept running
    # The EEPROM bootloader (updater.bootloader); ``data["bootloader"]`` is a build timestamp.
    BOOTLOADER_BELOW_MINIMUM = "bootloader-below-minimum"
    BOOTLOADER_STAGED = "bootloader-staged"
    BOOTLOADER_UPDATED = "bootloader-updated"
    BOOTLOADER_FAILED = "bootloader-failed"
    VERITY_CORRUPTION = "verity-corruption"  # dm-verity refused a block of the running root


class BootMode(StrEnum):
    """How much of what the device runs was verified as it booted (docs/security.md)."""

    UNSIGNED = "unsigned"  # nothing: the root is read as it is on the card
    VERITY = "verity"  # the root through dm-verity, its root hash from cmdline.txt
    SECURE_VERITY = "secure-boot+verity"  # and the bootloader checked boot.sig over boot.img


PUBLIC_KEY = r"^[A-Za-z0-9+/]{43}=$"


class RegisterRequest(_Request):
    enrollment_token: Annotated[str, text(200, min_length=1)]
    hostname: Annotated[str, text(253, min_length=1)]
    hardware: Hardware
    serial: Annotated[str, text(64)] | None = None
    image_version: Version
    booted_slot: Slot
    # The device's ed25519 public key, base64 of the raw 32 bytes (ADR 0075). A device that
    # sends one is bound to it: every later request of its must be signed with it.
    public_key: Annotated[str, StringConstraints(pattern=PUBLIC_KEY, max_length=44)] | None = None


class RekeyRequest(_Request):
    """A device's new public key, sent signed with its old one (ADR 0075)."""

    public_key: Annotated[str, StringConstraints(pattern=PUBLIC_KEY, max_length=44)]


class RegisterResponse(_Response):
    device_id: str
    device_token: str


# SHA-256 in hex: what identifies a device's configuration (DesiredState.config_digest).
CONFIG_DIGEST = r"^[0-9a-f]{64}$"

# Every number and string a device sends is bounded at the edge (fleetcore.bounded) to what a
# database column can hold, so one device's value can never fail a batch that carries other
# devices' data.
MAX_ROLES = 64
# The Overlord indexes a device's roles as ",name,name," in a 2000-character column.
ROLE_INDEX_CHARS = 2000


class RoleStatus(_Request):
    name: Annotated[str, Field(max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
    version: Version | None
    health: Health
    safe_mode: bool = False


class BoardReport(_Request):
    """The board as its firmware describes it (``updater.board``): ``board`` is the
    ``fleetcore.boards.Board`` value (a plain bounded name, so an Overlord older than a new
    board still stores it), ``model`` the device tree's model string, ``revision`` the
    revision code in hex, ``memory_mib`` the RAM the revision code declares."""

    board: Annotated[str, Field(max_length=16, pattern=r"^[a-z0-9]+$")]
    model: Annotated[str, text(128)] | None = None
    revision: Annotated[str, Field(pattern=r"^[0-9a-f]{1,8}$")] | None = None
    memory_mib: Count | None = None


# A bootloader build timestamp: seconds since 1970, within the 32 bits the EEPROM stores.
EepromTimestamp = Annotated[int, Field(ge=0, le=0xFFFFFFFF, strict=True)]


class BootloaderReport(_Request):
    """The EEPROM bootloader (``updater.bootloader``): its ``version`` (build timestamp), the
    settings that matter (``boot_order`` as rpi-eeprom-config prints it, ``secure_boot`` from
    ``SIGNED_BOOT``), the ``tryboot_ab`` verdict against ``minimum``
    (``fleetcore.bootloader.MINIMUMS``), a ``pending`` update staged for the next boot, and
    ``error`` when the device could not read it (then the other fields are unknown)."""

    version: EepromTimestamp | None = None
    boot_order: Annotated[str, Field(pattern=r"^0x[0-9a-f]{1,8}$")] | None = None
    secure_boot: bool | None = None
    tryboot_ab: TrybootSupport = TrybootSupport.UNKNOWN
    minimum: EepromTimestamp | None = None
    pending: EepromTimestamp | None = None
    error: Annotated[str, text(300)] | None = None


class Heartbeat(_Request):
    image_version: Version
    booted_slot: Slot
    committed_slot: Slot
    update_state: UpdateState
    roles: list[RoleStatus] = Field(default_factory=list, max_length=MAX_ROLES)
    health: Health
    free_data_bytes: Count
    uptime_s: FiniteFloat = Field(ge=0, le=1e12)
    dropped_events: Count = Field(default=0, description="queued items lost while offline")
    node_exporter: str | None = Field(
        default=None,
        max_length=261,
        pattern=r"^[A-Za-z0-9.:\[\]-]+:[0-9]{1,5}$",
        description="host:port where the Overlord's Prometheus reaches this device's node exporter",
    )
    board: BoardReport | None = Field(default=None, description="the board, from its firmware")
    boot_mode: BootMode | None = Field(
        default=None, description="what the boot verified; None from agents older than it"
    )
    config_digest: str | None = Field(
        default=None,
        pattern=CONFIG_DIGEST,
        description="the DesiredState.config_digest whose configuration every role now runs with",
    )
    bootloader: BootloaderReport | None = Field(
        default=None, description="the EEPROM bootloader, from vcgencmd and rpi-eeprom-config"
    )
    staged_version: Version | None = Field(
        default=None,
        description="the release staged in the inactive slot, waiting for admission (ADR 0082)",
    )

    @model_validator(mode="after")
    def _roles_fit_the_index(self) -> Heartbeat:
        if 1 + sum(len(role.name) + 1 for role in self.roles) > ROLE_INDEX_CHARS:
            raise ValueError(f"role names take more than {ROLE_INDEX_CHARS} characters together")
        return self


class Event(_Request):
    seq: Count = Field(description="device-local sequence number; the Overlord dedupes on it")
    time: UtcDatetime
    kind: EventKind
    version: Version | None = None
    message: Annotated[str, text(4096)] = ""
    reason: Annotated[str, text(4096)] | None = None
    data: dict[DataKey, DataValue] = Field(default_factory=dict, max_length=32)


class EventBatch(_Request):
    events: list[Event] = Field(min_length=1, max_length=1000)


class EventAck(_Response):
    accepted: int
    last_seq: int


class DesiredOS(_Response):
    version: Version
    manifest_target: str


class DesiredPrestage(_Response):
    """An OS release a running rollout will admit the device to later (ADR 0082): download,
    write and verify it into the inactive slot now, without asking for the trial boot."""

    version: Version
    manifest_target: str
    poll_s: int | None = Field(
        default=None,
        ge=5,
        le=3600,
        description="once this release is staged, poll this often while the hint stands, so "
        "admission is noticed in seconds (None: the usual interval)",
    )


class DesiredRole(_Response):
    name: str
    version: Version
    target: str


class DesiredVariable(_Response):
    """One configuration variable for the roles' ``.env`` templates (``vars.KEY``)."""

    value: ConfigValue = Field(repr=False)
    secret: bool = Field(
        default=False, description="mask it in logs and write it nowhere but a role's .env"
    )


class DesiredBootloader(_Response):
    """A bootloader release for the device's family (``bootloader/<family>/<version>/``);
    the version is its build instant (``fleetcore.eeprom.release_version``)."""

    version: Version


class DesiredRemote(_Response):
    """A remote troubleshooting session the device should join (ADR 0074). The kind is any
    short word, so an agent refuses a kind it does not know with a reason instead of
    rejecting the whole desired state."""

    session: str = Field(pattern=r"^[A-Za-z0-9_-]{16,32}$")
    kind: str = Field(pattern=r"^[a-z]{1,16}$")
    unit: str | None = Field(default=None, max_length=256)
    priority: str | None = Field(default=None, max_length=16)
    lines: int | None = Field(default=None, ge=0, le=1000)
    port: int | None = Field(default=None, ge=1, le=65535)
    poll_s: int = Field(
        default=2, ge=1, le=60, description="poll this often while the session is named"
    )


class RemoteWake(_Response):
    """The answer to a device's long-poll for a remote session (ADR 0083): ``pending`` when
    one is open for it (poll the desired state now), else the wait ran out."""

    pending: bool


class DesiredState(_Response):
    os: DesiredOS | None = None
    bootloader: DesiredBootloader | None = None
    prestage: DesiredPrestage | None = Field(
        default=None, description="stage this OS release without rebooting (ADR 0082)"
    )
    roles: list[DesiredRole] = Field(default_factory=list)
    safe_mode: bool = False
    poll_interval_s: int | None = Field(default=None, ge=5, le=3600)
    config: dict[ConfigKey, DesiredVariable] = Field(
        default_factory=dict,
        description="the merged fleet, group and device configuration (the most specific wins)",
    )
    config_digest: str | None = Field(
        default=None,
        pattern=CONFIG_DIGEST,
        description="identifies ``config``; a device reports it back once applied",
    )
    remote: DesiredRemote | None = Field(
        default=None, description="the oldest open remote session for the device, if any"
    )
