"""Rollout and device-group schemas (Create / Update / Public)."""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from fleetcore.bounded import Name, text
from fleetcore.release import Hardware
from fleetcore.version import Version
from overlord.db import utcnow
from overlord.devices.schemas import DeviceId, GroupName, LabelPart
from overlord.rollouts import schedule
from overlord.rollouts.models import DeviceOutcome, ReleaseKind, RolloutState

RolloutName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
RoleName = Name


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


Groups = Annotated[list[GroupName], Field(max_length=64)]
Labels = Annotated[dict[LabelPart, LabelPart], Field(max_length=16)]
HardwareList = Annotated[list[Hardware], Field(max_length=len(Hardware))]


class Exclusion(_In):
    """Devices a rollout never admits: any one condition excludes a device."""

    groups: Groups = Field(default_factory=list, description="devices in any of these groups")
    labels: Labels = Field(default_factory=dict, description="devices with any of these labels")
    hardware: HardwareList = Field(default_factory=list, description="devices on these boards")
    devices: list[DeviceId] = Field(default_factory=list, max_length=1000)


class Selector(_In):
    """Which devices a rollout targets: in one of ``groups`` (any group when empty), with every
    label of ``labels``, on one of ``hardware`` (any when empty), and not excluded."""

    groups: Groups = Field(default_factory=list)
    labels: Labels = Field(default_factory=dict)
    hardware: HardwareList = Field(default_factory=list)
    exclude: Exclusion = Field(default_factory=Exclusion)

    @model_validator(mode="after")
    def _not_both(self) -> Selector:
        for field in ("groups", "hardware"):
            both = set(getattr(self, field)) & set(getattr(self.exclude, field))
            if both:
                raise ValueError(
                    f"selector.exclude.{field}: {', '.join(sorted(both))} also targeted"
                )
        return self


class RolloutCreate(_In):
    name: RolloutName
    kind: ReleaseKind
    role: RoleName | None = Field(default=None, description="role name, for kind=role")
    version: Version
    selector: Selector = Field(default_factory=Selector)
    canary_devices: int = Field(default=1, ge=1, le=1000)
    stages: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        default_factory=lambda: [10, 50, 100],
        min_length=1,
        max_length=20,
        description="percentages of the selected devices after the canary; the last is 100",
    )
    success_window_s: int = Field(default=600, ge=0, le=7 * 86400)
    stage_timeout_s: int = Field(
        default=7200,
        ge=60,
        le=30 * 86400,
        description="a device that has not reported success this long after its admission "
        "counts as failed for the halt threshold",
    )
    failure_threshold: float = Field(default=0.05, ge=0, le=1)
    start: bool = Field(default=True, description="false: created pending, resume starts it")
    start_at: AwareDatetime | None = Field(
        default=None,
        description="start later: pending until this time (ISO 8601 with a zone), then the "
        "scheduler starts it",
    )
    deadline: AwareDatetime | None = Field(
        default=None,
        description="stop admitting devices at this time: the rollout halts with the reason "
        "'deadline passed' and devices already updating finish",
    )

    @field_validator("start_at")
    @classmethod
    def _start_ahead(cls, value: datetime | None) -> datetime | None:
        if value is not None:
            schedule.check_start(value, now=utcnow())
        return value

    @field_validator("deadline")
    @classmethod
    def _deadline_ahead(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is not None:
            schedule.check_deadline(value, start_at=info.data.get("start_at"), now=utcnow())
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RolloutCreate:
        if (self.kind is ReleaseKind.ROLE) != (self.role is not None):
            raise ValueError("a role rollout names its role; an os rollout does not")
        if self.start_at is not None and not self.start:
            raise ValueError("start_at schedules the start: leave start true")
        if self.stages != sorted(set(self.stages)) or self.stages[-1] != 100:
            raise ValueError("stage percentages strictly increase and end at 100")
        return self


class RolloutPublic(BaseModel):
    id: int
    name: str
    kind: ReleaseKind
    role: str | None
    version: str
    target: str
    selector: Selector
    canary_devices: int
    stages: list[int]
    success_window_s: int
    stage_timeout_s: int
    failure_threshold: float
    start_at: datetime | None
    deadline: datetime | None
    state: RolloutState
    current_stage: int
    stage_label: str
    halt_reason: str | None
    actions: list[str] = Field(
        description="what an operator can do to it now: pause, resume, abort "
        "(never resume once its deadline passed)"
    )
    devices: dict[DeviceOutcome, int]
    failure_ratio: float
    created_at: datetime
    updated_at: datetime


class DeviceUpdatePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    device_id: str
    stage: int
    outcome: DeviceOutcome
    reason: str | None
    admitted_at: datetime
    finished_at: datetime | None


class GroupUpdate(_In):
    """PUT /groups/{name}: the maintenance window (UTC, may wrap midnight) and poll interval."""

    description: Annotated[str, text(2000)] = ""
    window_start: time | None = None
    window_end: time | None = None
    poll_interval_s: int | None = Field(default=None, ge=5, le=3600)

    @model_validator(mode="after")
    def _window_pair(self) -> GroupUpdate:
        if (self.window_start is None) != (self.window_end is None):
            raise ValueError("a maintenance window needs both window_start and window_end")
        if self.window_start is not None and self.window_start == self.window_end:
            raise ValueError("an empty maintenance window never opens")
        if any(
            t is not None and t.tzinfo is not None for t in (self.window_start, self.window_end)
        ):
            raise ValueError("maintenance window times are UTC, written without an offset")
        return self


class GroupPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    description: str
    window_start: time | None
    window_end: time | None
    poll_interval_s: int | None
    devices: int = 0
