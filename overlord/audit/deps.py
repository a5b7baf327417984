"""The acting operator of a request, for the audit entry of what the request changes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from overlord.audit.models import Channel
from overlord.audit.service import Actor
from overlord.auth.deps import Admin, Operator, client_address
from overlord.auth.service import Principal


def actor_of(principal: Principal, request: HTTPConnection, *, via: Channel = Channel.API) -> Actor:
    """The key behind ``principal``, from the client address the proxy handling settled on."""
    return Actor(
        key_id=principal.key_id,
        name=principal.name,
        role=principal.role,
        source=client_address(request),
        via=via,
    )


async def _operator(caller: Operator, request: Request) -> Actor:
    return actor_of(caller, request)


async def _admin(caller: Admin, request: Request) -> Actor:
    return actor_of(caller, request)


OperatorActor = Annotated[Actor, Depends(_operator)]
"""An operator (or admin) token's caller, as the actor of an audited change."""
AdminActor = Annotated[Actor, Depends(_admin)]
"""An admin token's caller, as the actor of an audited change."""
