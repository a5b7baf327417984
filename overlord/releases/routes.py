"""Releases, as listed in the signed TUF targets metadata."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from fleetcore.wire import API_PREFIX
from overlord.auth.deps import Viewer
from overlord.deps import Ctx
from overlord.releases import service
from overlord.releases.schemas import ReleasePublic
from signing.targets import TargetKind

router = APIRouter(prefix=f"{API_PREFIX}/releases", tags=["releases"])


@router.get("", response_model=list[ReleasePublic])
def list_releases(
    _caller: Viewer, ctx: Ctx, kind: Annotated[TargetKind | None, Query()] = None
) -> list[ReleasePublic]:
    return [
        service.to_public(r)
        for r in service.list_releases(repo_dir=ctx.settings.repo_dir, kind=kind)
    ]
