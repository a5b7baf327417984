"""``/api/v1/config``: configuration variables of the fleet, a group or a device.

Each level has the same four operations (``GET`` the level's variables, ``PATCH`` several
keys at once, ``PUT``/``DELETE`` one key); viewers read, operators write, and nobody reads a
secret value back. ``GET /config/devices/{id}/effective`` is what the device gets, with where
each value comes from.
"""

# No ``from __future__ import annotations``: the routes of each level are made in a function,
# and FastAPI must see their annotations (the level's scope dependency) as objects.
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from fleetcore.bounded import ConfigKey
from fleetcore.wire import API_PREFIX
from overlord.audit.deps import OperatorActor
from overlord.auth.deps import Viewer
from overlord.configvars import service
from overlord.configvars.models import ConfigScope, ConfigVariable
from overlord.configvars.schemas import (
    ConfigChange,
    ConfigScopePublic,
    EffectiveConfig,
    VariableIn,
    VariablePublic,
)
from overlord.context import AppContext
from overlord.deps import Ctx, DbSession
from overlord.devices import service as devices_service
from overlord.devices.schemas import DeviceId, GroupName
from overlord.openapi import error_responses

router = APIRouter(prefix=f"{API_PREFIX}/config", tags=["config"])
KeyPath = Annotated[ConfigKey, Path(description="an environment variable's name")]


def _fleet() -> service.Scope:
    return service.FLEET


def _group(name: Annotated[GroupName, Path()]) -> service.Scope:
    return service.Scope(ConfigScope.GROUP, name)


def _device(device_id: DeviceId) -> service.Scope:
    return service.Scope(ConfigScope.DEVICE, device_id)


def _scope_public(scope: service.Scope, rows: list[ConfigVariable]) -> ConfigScopePublic:
    return ConfigScopePublic(
        scope=scope.kind, name=scope.target or None, variables=[service.public(r) for r in rows]
    )


def _forget_cached(ctx: AppContext, scope: service.Scope) -> None:
    """This replica at once (the others within ``change_poll_s``, or at commit on PostgreSQL)."""
    if scope.kind is ConfigScope.DEVICE:
        ctx.desired.drop(scope.target)
    else:
        ctx.desired.clear()


def _add_level(path: str, level: str, resolve: Callable[..., service.Scope]) -> None:
    """The four operations on one level's variables."""
    ScopeOf = Annotated[service.Scope, Depends(resolve)]
    missing = error_responses(404) if level != "fleet" else {}

    @router.get(path, response_model=ConfigScopePublic, name=f"{level}_config", responses=missing)
    def read(scope: ScopeOf, _caller: Viewer, session: DbSession) -> ConfigScopePublic:
        """The level's variables in key order; secret values as ``***``."""
        return _scope_public(scope, service.variables(session, scope))

    @router.patch(
        path,
        response_model=ConfigScopePublic,
        name=f"change_{level}_config",
        responses=error_responses(404, 409),
    )
    def change(
        scope: ScopeOf, body: ConfigChange, actor: OperatorActor, ctx: Ctx, session: DbSession
    ) -> ConfigScopePublic:
        """Set and unset several keys at once, all or nothing (404: a key to unset is not set;
        409: a secret value without OVERLORD_CONFIG_KEY)."""
        rows = service.change(
            session,
            scope,
            assign={k: service.NewValue(v.value, v.secret) for k, v in body.set.items()},
            unset=body.unset,
            sealer=ctx.sealer,
            actor=actor,
        )
        _forget_cached(ctx, scope)
        return _scope_public(scope, rows)

    @router.put(
        f"{path}/{{key}}",
        response_model=VariablePublic,
        name=f"set_{level}_variable",
        responses=error_responses(409),
    )
    def put(
        scope: ScopeOf,
        key: KeyPath,
        body: VariableIn,
        actor: OperatorActor,
        ctx: Ctx,
        session: DbSession,
    ) -> VariablePublic:
        """Set one key (409: a secret value without OVERLORD_CONFIG_KEY)."""
        rows = service.change(
            session,
            scope,
            assign={key: service.NewValue(body.value, body.secret)},
            sealer=ctx.sealer,
            actor=actor,
        )
        _forget_cached(ctx, scope)
        return service.public(next(r for r in rows if r.key == key))

    @router.delete(
        f"{path}/{{key}}", status_code=status.HTTP_204_NO_CONTENT, name=f"unset_{level}_variable"
    )
    def delete(
        scope: ScopeOf, key: KeyPath, actor: OperatorActor, ctx: Ctx, session: DbSession
    ) -> Response:
        """Unset one key (404 when it is not set here)."""
        service.change(session, scope, assign={}, unset=[key], sealer=ctx.sealer, actor=actor)
        _forget_cached(ctx, scope)
        return Response(status_code=status.HTTP_204_NO_CONTENT)


_add_level("/fleet", "fleet", _fleet)
_add_level("/groups/{name}", "group", _group)
_add_level("/devices/{device_id}", "device", _device)


@router.get("/devices/{device_id}/effective", response_model=EffectiveConfig)
def effective(device_id: DeviceId, _caller: Viewer, session: DbSession) -> EffectiveConfig:
    """What the device gets: each key's most specific value, where it is set and what it
    overrides, secrets as ``***``; and whether the device reported applying it."""
    device = devices_service.get_device(session, device_id=device_id)
    return service.effective_config(session, device)
