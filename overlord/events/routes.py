"""Alerts the Overlord raised (rollout halts, rollbacks, safe mode) and their rules."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from fleetcore.wire import API_PREFIX
from overlord.audit.deps import AdminActor, OperatorActor
from overlord.auth.deps import Viewer
from overlord.deps import DbSession
from overlord.events import service
from overlord.events.models import AlertKind
from overlord.events.schemas import AlertPublic, AlertRulePublic, AlertRuleUpdate
from overlord.ids import BigRowId

router = APIRouter(prefix=API_PREFIX, tags=["alerts"])


@router.get("/alerts", response_model=list[AlertPublic])
def list_alerts(
    _caller: Viewer,
    session: DbSession,
    open_only: Annotated[bool, Query(alias="open")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AlertPublic]:
    return [
        AlertPublic.model_validate(a)
        for a in service.list_alerts(session, open_only=open_only, limit=limit)
    ]


@router.post("/alerts/{alert_id}/resolve", response_model=AlertPublic)
def resolve_alert(alert_id: BigRowId, actor: OperatorActor, session: DbSession) -> AlertPublic:
    return AlertPublic.model_validate(
        service.resolve_alert(session, alert_id=alert_id, actor=actor)
    )


@router.get("/alert-rules", response_model=list[AlertRulePublic])
def list_rules(_caller: Viewer, session: DbSession) -> list[AlertRulePublic]:
    return [AlertRulePublic.model_validate(r) for r in service.list_rules(session)]


@router.put("/alert-rules/{kind}", response_model=AlertRulePublic)
def set_rule(
    kind: AlertKind, body: AlertRuleUpdate, actor: AdminActor, session: DbSession
) -> AlertRulePublic:
    return AlertRulePublic.model_validate(
        service.set_rule(session, kind=kind, enabled=body.enabled, actor=actor)
    )
