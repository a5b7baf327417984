"""The publish API; the repository itself is mounted as static files at /tuf (see app.py)."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.staticfiles import StaticFiles

from fleetcore.delta import is_delta_path
from fleetcore.wire import API_PREFIX
from overlord import leases
from overlord.audit import service as audit
from overlord.audit.deps import OperatorActor
from overlord.audit.models import AuditAction, AuditObject
from overlord.audit.service import Actor
from overlord.db import unit_of_work
from overlord.deps import Ctx
from overlord.errors import PublishRejected
from overlord.tuf import service
from overlord.tuf.models import (
    CHUNK_FIELD,
    DELTA_FIELD,
    SIGNED_ROOT_FIELD,
    SIGNED_TARGETS_FIELD,
    TARGET_FIELD,
    WRITE_LEASE,
)
from overlord.tuf.schemas import PublishResult

router = APIRouter(prefix=f"{API_PREFIX}/tuf", tags=["tuf"])
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MAX_PARTS = 200_000
_PUBLISH_DESCRIPTION = f"""Publish a release or a key rotation signed offline.

multipart/form-data with: `{SIGNED_ROOT_FIELD}` = the next root version (N+1.root.json, after
`fleet-sign rotate`), optional; `{SIGNED_TARGETS_FIELD}` = the new signed targets metadata,
optional when a root is given; one `{TARGET_FIELD}<target name>` file per new target
(manifest, indexes, delta lists, role bundles); one `{CHUNK_FIELD}<sha256>` file per new chunk
(zstd); one `{DELTA_FIELD}<deltas/...>` file per new diff an uploaded delta list names.
Nothing is served unless a new root is signed by the thresholds of the current root and of
itself, the targets signature verifies against the (new) root's targets keys and every file
matches its signed hashes.
"""
_SIGNED_FIELDS = (SIGNED_ROOT_FIELD, SIGNED_TARGETS_FIELD)
_TARGETS_RECORDED = 100  # target names an audit entry lists; the count is always there


@router.post(
    "/publish",
    response_model=PublishResult,
    status_code=status.HTTP_201_CREATED,
    description=_PUBLISH_DESCRIPTION,
)
async def publish(request: Request, actor: OperatorActor, ctx: Ctx) -> PublishResult:
    form = await request.form(max_files=_MAX_PARTS, max_fields=_MAX_PARTS)
    try:
        signed: dict[str, bytes] = {}
        for name in _SIGNED_FIELDS:
            part = form.get(name)
            if part is None:
                continue
            if not isinstance(part, UploadFile):
                raise PublishRejected(f"form field {name!r} must be a file")
            signed[name] = await part.read()
        if not signed:
            raise PublishRejected(
                f"the {SIGNED_TARGETS_FIELD!r} (or {SIGNED_ROOT_FIELD!r}) file part is missing"
            )
        with tempfile.TemporaryDirectory(prefix="overlord-publish-") as tmp:
            uploads: dict[str, Path] = {}
            chunks: dict[str, Path] = {}
            diffs: dict[str, Path] = {}
            for index, (field, value) in enumerate(form.multi_items()):
                if field in _SIGNED_FIELDS:
                    continue
                if not isinstance(value, UploadFile):
                    raise PublishRejected(f"form field {field!r} must be a file")
                dest = Path(tmp) / str(index)
                await run_in_threadpool(_spool, value, dest)
                if field.startswith(TARGET_FIELD):
                    uploads[field.removeprefix(TARGET_FIELD)] = dest
                elif field.startswith(CHUNK_FIELD) and _SHA256.fullmatch(
                    field.removeprefix(CHUNK_FIELD)
                ):
                    chunks[field.removeprefix(CHUNK_FIELD)] = dest
                elif field.startswith(DELTA_FIELD) and is_delta_path(
                    field.removeprefix(DELTA_FIELD)
                ):
                    diffs[field.removeprefix(DELTA_FIELD)] = dest
                else:
                    raise PublishRejected(f"unexpected form field {field!r}")
            return await run_in_threadpool(
                _publish_locked,
                ctx,
                actor,
                signed.get(SIGNED_ROOT_FIELD),
                signed.get(SIGNED_TARGETS_FIELD),
                uploads,
                chunks,
                diffs,
            )
    finally:
        await form.close()


def _spool(upload: UploadFile, dest: Path) -> None:
    with dest.open("wb") as out:
        shutil.copyfileobj(upload.file, out, 1 << 20)


def _publish_locked(
    ctx: Ctx,
    actor: Actor,
    signed_root: bytes | None,
    signed_targets: bytes | None,
    uploads: dict[str, Path],
    chunks: dict[str, Path],
    diffs: dict[str, Path],
) -> PublishResult:
    """Publish under the write lease; the audit entry follows the files in that lease.

    The repository is files, not rows, so the entry cannot share their transaction: it is
    written right after they are in place (ADR 0067).
    """
    with leases.held(
        ctx.sessions,
        name=WRITE_LEASE,
        holder=f"{ctx.replica_id}/publish/{actor.key_id}",
        ttl_s=600,
        wait_s=30,
    ):
        before = service.served(ctx.settings.repo_dir)
        result = service.publish(
            repo_dir=ctx.settings.repo_dir,
            keys_dir=ctx.settings.keys_dir,
            signed_root=signed_root,
            signed_targets=signed_targets,
            uploads=uploads,
            chunks=chunks,
            diffs=diffs,
        )
        _record_publish(ctx, actor, before, result)
        return result


def _record_publish(
    ctx: Ctx, actor: Actor, before: service.Served | None, result: PublishResult
) -> None:
    added = sorted(set(result.targets) - (before.targets if before else frozenset()))
    with unit_of_work(ctx.sessions) as session:
        audit.record(
            session,
            actor,
            AuditAction.RELEASE_PUBLISH,
            object_type=AuditObject.REPOSITORY,
            before=None
            if before is None
            else {"root_version": before.root_version, "targets_version": before.targets_version},
            after={
                "root_version": result.root_version,
                "targets_version": result.targets_version,
                "added_targets": added[:_TARGETS_RECORDED],
                "added_target_count": len(added),
                "new_chunks": result.new_chunks,
                "new_deltas": result.new_deltas,
            },
        )


class RepositoryFiles(StaticFiles):
    """The repository directory as static files; 404 until something is published there."""

    async def check_config(self) -> None:
        if self.directory is None or not Path(self.directory).is_dir():
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no release repository is published")
        await super().check_config()
