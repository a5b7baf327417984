"""Release listings for operators."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from signing.targets import TargetKind

GC_FILES_SHOWN = 1000


class ReleasePublic(BaseModel):
    kind: TargetKind
    name: str
    version: str
    target: str
    length: int
    sha256: str
    uncompressed_size: int = Field(
        description="bytes installed: the system image of an OS release, a role's bundle"
    )
    hardware: list[str]
    version_floor: str | None


class GcRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dry_run: bool = False
    keep_last: int | None = Field(default=None, ge=1, le=1000)


class GcFile(BaseModel):
    path: str
    size: int


class GcResult(BaseModel):
    dry_run: bool
    kept_releases: list[str]
    dropped_releases: list[str]
    deleted_files: int
    deleted_bytes: int
    files: list[GcFile] = Field(description=f"the first {GC_FILES_SHOWN} files, by path")
