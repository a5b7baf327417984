"""View models the dashboard templates render (the dashboard owns no tables)."""

from __future__ import annotations

from dataclasses import dataclass, field

from overlord.configvars.schemas import EffectiveConfig
from overlord.devices.schemas import DevicePublic
from overlord.events.schemas import DeviceEventPublic
from overlord.rollouts.schemas import DeviceUpdatePublic


@dataclass(frozen=True)
class VersionRow:
    version: str
    total: int
    by_status: dict[str, int]


@dataclass(frozen=True)
class RoleRow:
    role: str
    version: str
    total: int
    by_health: dict[str, int]


@dataclass(frozen=True)
class FleetSummary:
    total: int
    by_status: dict[str, int]
    images: list[VersionRow]
    roles: list[RoleRow]


@dataclass(frozen=True)
class DevicePage:
    device: DevicePublic
    events: list[DeviceEventPublic]
    rollbacks: list[DeviceEventPublic]
    updates: list[tuple[str, DeviceUpdatePublic]] = field(default_factory=list)
    config: EffectiveConfig | None = None
