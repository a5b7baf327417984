"""Dashboard form input."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict

from fleetcore.bounded import text
from overlord.devices.models import AdminStatus


class LoginForm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: Annotated[str, text(200, min_length=1)]


class ActionForm(BaseModel):
    """A rollout action (pause, resume, abort) from the dashboard."""

    model_config = ConfigDict(extra="forbid")

    csrf: Annotated[str, text(128, min_length=1)]


class RolloutActionForm(ActionForm):
    """Where to go back to: the fleet page's table or the rollout's own page."""

    back: Literal["fleet", "rollout"] = "fleet"


class DeviceStatusForm(ActionForm):
    status: AdminStatus
