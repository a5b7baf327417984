"""Credential schemas: a token is shown once, on creation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from fleetcore.bounded import text
from overlord.auth.models import KeyRole


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: KeyRole = Field(description="admin, operator, viewer or enrollment")
    name: Annotated[str, text(200)] = ""
    expires_in_s: int | None = Field(default=None, ge=60, le=10 * 365 * 86400)


class ApiKeyPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    role: KeyRole
    name: str
    device_id: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyPublic):
    token: str
