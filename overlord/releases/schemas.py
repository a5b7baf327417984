"""Release listings for operators."""

from __future__ import annotations

from pydantic import BaseModel

from signing.targets import TargetKind


class ReleasePublic(BaseModel):
    kind: TargetKind
    name: str
    version: str
    target: str
    length: int
    sha256: str
    hardware: list[str]
    version_floor: str | None
