"""A release as the signed TUF targets metadata describes it (no table: TUF is the source)."""

from __future__ import annotations

from dataclasses import dataclass

from fleetcore.version import Version
from signing.targets import TargetKind


@dataclass(frozen=True)
class Release:
    kind: TargetKind
    name: str
    version: Version
    target: str
    length: int
    sha256: str
    uncompressed_size: int
    hardware: tuple[str, ...]
    version_floor: Version | None
