"""FastAPI dependencies shared by every domain's routes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from overlord.context import AppContext
from overlord.db import unit_of_work


async def get_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_context)]


def get_session(ctx: Ctx) -> Iterator[Session]:
    with unit_of_work(ctx.sessions) as session:
        yield session


# "function" scope commits before the response is sent, so a failed commit is never a 2xx.
DbSession = Annotated[Session, Depends(get_session, scope="function")]
