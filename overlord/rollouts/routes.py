"""Rollouts and device groups."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from fleetcore.wire import API_PREFIX
from overlord.audit.deps import OperatorActor
from overlord.auth.deps import Viewer
from overlord.deps import Ctx, DbSession
from overlord.devices.schemas import GroupName
from overlord.ids import BigRowId
from overlord.openapi import error_responses
from overlord.rollouts import service
from overlord.rollouts.models import RolloutState
from overlord.rollouts.schemas import (
    DeviceUpdatePublic,
    GroupPublic,
    GroupUpdate,
    RolloutCreate,
    RolloutPublic,
)

router = APIRouter(prefix=API_PREFIX, tags=["rollouts"])
RolloutId = BigRowId


@router.post(
    "/rollouts",
    response_model=RolloutPublic,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(404),  # the release or the device group named in the body
)
def create_rollout(
    body: RolloutCreate, actor: OperatorActor, ctx: Ctx, session: DbSession
) -> RolloutPublic:
    rollout = service.create_rollout(
        session, spec=body, repo_dir=ctx.settings.repo_dir, actor=actor
    )
    return service.to_public(session, rollout)


@router.get("/rollouts", response_model=list[RolloutPublic])
def list_rollouts(
    _caller: Viewer, session: DbSession, state: Annotated[RolloutState | None, Query()] = None
) -> list[RolloutPublic]:
    return service.public_rollouts(session, service.list_rollouts(session, state=state))


@router.get("/rollouts/{rollout_id}", response_model=RolloutPublic)
def get_rollout(rollout_id: RolloutId, _caller: Viewer, session: DbSession) -> RolloutPublic:
    return service.to_public(session, service.get_rollout(session, rollout_id=rollout_id))


@router.get("/rollouts/{rollout_id}/devices", response_model=list[DeviceUpdatePublic])
def rollout_devices(
    rollout_id: RolloutId, _caller: Viewer, session: DbSession
) -> list[DeviceUpdatePublic]:
    return [
        DeviceUpdatePublic.model_validate(r)
        for r in service.device_updates(session, rollout_id=rollout_id)
    ]


@router.post("/rollouts/{rollout_id}/pause", response_model=RolloutPublic)
def pause(rollout_id: RolloutId, actor: OperatorActor, session: DbSession) -> RolloutPublic:
    return service.to_public(session, service.pause(session, rollout_id=rollout_id, actor=actor))


@router.post("/rollouts/{rollout_id}/resume", response_model=RolloutPublic)
def resume(rollout_id: RolloutId, actor: OperatorActor, session: DbSession) -> RolloutPublic:
    return service.to_public(session, service.resume(session, rollout_id=rollout_id, actor=actor))


@router.post("/rollouts/{rollout_id}/abort", response_model=RolloutPublic)
def abort(rollout_id: RolloutId, actor: OperatorActor, session: DbSession) -> RolloutPublic:
    return service.to_public(session, service.abort(session, rollout_id=rollout_id, actor=actor))


@router.get("/groups", response_model=list[GroupPublic])
def list_groups(_caller: Viewer, session: DbSession) -> list[GroupPublic]:
    return service.list_groups(session)


@router.put("/groups/{name}", response_model=GroupPublic)
def put_group(
    name: Annotated[GroupName, Path()],
    body: GroupUpdate,
    actor: OperatorActor,
    session: DbSession,
) -> GroupPublic:
    group = service.put_group(session, name=name, update=body, actor=actor)
    return GroupPublic.model_validate(group)


@router.delete("/groups/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_group(
    name: Annotated[GroupName, Path()], actor: OperatorActor, session: DbSession
) -> Response:
    service.delete_group(session, name=name, actor=actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
