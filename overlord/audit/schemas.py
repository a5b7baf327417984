"""The audit log as the API answers it (entries are never written through the API)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AuditEntryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor_key_id: int | None = Field(description="null: an unknown token, or the server's CLI")
    actor_name: str
    actor_role: str | None
    source: str = Field(description="the client address (after trusted-proxy handling)")
    via: str = Field(
        description="api, dashboard, cli, or scheduler (a scheduled start or deadline)"
    )
    action: str
    object_type: str
    object_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    request_id: str | None


class AuditPage(BaseModel):
    items: list[AuditEntryPublic] = Field(description="newest first")
    next_cursor: int | None = Field(
        description="pass as cursor for the next, older page; null on the last page"
    )
