"""What the remote-session API reads and answers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from overlord.remote.models import EndReason, SessionKind, SessionState

# A systemd unit name (systemd.unit(5)): no path separators, no spaces, no leading dash.
UnitName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9@_:.\\][A-Za-z0-9@_:.\\-]{0,255}$")
]
Priority = Literal["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]
SessionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{16,32}$")]
MAX_LINES = 1000


class OpenSession(BaseModel):
    """An operator's request: the kind and, for a log tail, its filters; for a forward, the
    port on the device's localhost."""

    model_config = ConfigDict(extra="forbid")

    kind: SessionKind
    unit: UnitName | None = None
    priority: Priority | None = None
    lines: int | None = Field(default=None, ge=0, le=MAX_LINES)
    port: int | None = Field(default=None, ge=1, le=65535)

    @model_validator(mode="after")
    def _fits_the_kind(self) -> OpenSession:
        given = {
            name
            for name in ("unit", "priority", "lines", "port")
            if getattr(self, name) is not None
        }
        allowed = {
            SessionKind.LOGS: {"unit", "priority", "lines"},
            SessionKind.SHELL: set(),
            SessionKind.FORWARD: {"port"},
        }[self.kind]
        if given - allowed:
            raise ValueError(
                f"a {self.kind.value} session takes no {', '.join(sorted(given - allowed))}"
            )
        if self.kind is SessionKind.FORWARD and self.port is None:
            raise ValueError("a forward session needs the device's port")
        return self

    def params(self) -> dict[str, Any]:
        return self.model_dump(exclude={"kind"}, exclude_none=True)


class RemoteSessionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    device_id: str
    kind: SessionKind
    state: SessionState
    params: dict[str, Any]
    opened_by: str
    opened_at: datetime
    joined_at: datetime | None
    last_activity_at: datetime
    ended_at: datetime | None
    end_reason: EndReason | None
    end_detail: str | None
