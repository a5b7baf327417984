"""Dashboard form input."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LoginForm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=200)
