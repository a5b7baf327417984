"""Releases, as listed in the signed TUF targets metadata."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Body, Query
from starlette.concurrency import run_in_threadpool

from fleetcore.wire import API_PREFIX
from overlord.audit.deps import AdminActor
from overlord.auth.deps import Viewer
from overlord.deps import Ctx
from overlord.releases import gc, service
from overlord.releases.schemas import GcRequest, GcResult, ReleasePublic
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


@router.post("/gc", response_model=GcResult)
async def collect_garbage(
    actor: AdminActor, ctx: Ctx, request: Annotated[GcRequest | None, Body()] = None
) -> GcResult:
    """Delete releases, chunks and metadata no device or client can need (docs/operations.md)."""
    request = request or GcRequest()
    gc_plan = await run_in_threadpool(
        gc.collect,
        sessions=ctx.sessions,
        repo_dir=ctx.settings.repo_dir,
        keep_last=request.keep_last or ctx.settings.release_keep_last,
        metadata_window=timedelta(seconds=ctx.settings.metadata_keep_s),
        holder=f"{ctx.replica_id}/gc/{actor.key_id}",
        dry_run=request.dry_run,
        actor=actor,
    )
    return gc.to_result(gc_plan, repo_dir=ctx.settings.repo_dir, dry_run=request.dry_run)
