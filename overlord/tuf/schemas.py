"""Publish API results."""

from __future__ import annotations

from pydantic import BaseModel


class PublishResult(BaseModel):
    root_version: int
    targets_version: int
    targets: list[str]
    new_chunks: int
    new_deltas: int = 0
