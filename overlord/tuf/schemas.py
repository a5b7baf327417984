"""Publish API results."""

from __future__ import annotations

from pydantic import BaseModel


class PublishResult(BaseModel):
    targets_version: int
    targets: list[str]
    new_chunks: int
