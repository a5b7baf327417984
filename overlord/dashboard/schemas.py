"""Dashboard form input."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from overlord.devices.models import AdminStatus


class LoginForm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=200)


class ActionForm(BaseModel):
    """A rollout action (pause, resume, abort) from the dashboard."""

    model_config = ConfigDict(extra="forbid")

    csrf: str = Field(min_length=1, max_length=128)


class DeviceStatusForm(ActionForm):
    status: AdminStatus
