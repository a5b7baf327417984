"""Configuration variables as the API takes and answers them (secret values as ``***``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fleetcore.bounded import ConfigKey, ConfigValue
from overlord.configvars.models import ConfigScope

MAX_KEYS = 100
"""Variables one scope (the fleet, a group, a device) may hold."""


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VariableIn(_In):
    value: ConfigValue = Field(description="one line, at most 4 KiB in UTF-8")
    secret: bool = Field(
        default=False,
        description="encrypted at rest, shown as ***, sent only to the devices it applies to",
    )


class ConfigChange(_In):
    """Variables to set and to unset in one scope, all or nothing."""

    set: dict[ConfigKey, VariableIn] = Field(default_factory=dict, max_length=MAX_KEYS)
    unset: list[ConfigKey] = Field(default_factory=list, max_length=MAX_KEYS)

    @model_validator(mode="after")
    def _one_thing_per_key(self) -> ConfigChange:
        if not self.set and not self.unset:
            raise ValueError("nothing to set or unset")
        if len(set(self.unset)) != len(self.unset):
            raise ValueError("unset names a key twice")
        if both := sorted(set(self.set) & set(self.unset)):
            raise ValueError(f"set and unset both name {', '.join(both)}")
        return self


class VariablePublic(BaseModel):
    key: str
    value: str = Field(description="*** for a secret value")
    secret: bool
    updated_at: datetime


class ConfigScopePublic(BaseModel):
    scope: ConfigScope
    name: str | None = Field(description="the group's name or the device's id; null: the fleet")
    variables: list[VariablePublic]


class EffectiveVariable(VariablePublic):
    source: str = Field(description="where the value is set: fleet, group/<name>, device/<id>")
    overrides: list[str] = Field(description="less specific levels that set the key too")


class EffectiveConfig(BaseModel):
    device_id: str
    group: str | None
    variables: list[EffectiveVariable]
    digest: str = Field(description="of the configuration the device should apply")
    applied_digest: str | None = Field(
        description="the digest the device last reported applying; null before it has"
    )
