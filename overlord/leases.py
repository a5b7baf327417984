"""Named leases in the database: how replicas agree on who runs a job or writes the repository.

A lease row works the same on PostgreSQL and SQLite, survives a holder's crash (it expires)
and needs no session-level state such as an advisory lock held on a pooled connection.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from overlord.auth.models import Lease
from overlord.db import unit_of_work, utcnow
from overlord.errors import Conflict


def try_acquire(session: Session, *, name: str, holder: str, ttl_s: float) -> bool:
    """Take or renew ``name`` for ``ttl_s`` seconds; False when another live holder has it."""
    now = utcnow()
    expires = now + timedelta(seconds=ttl_s)
    result = session.execute(
        update(Lease)
        .where(Lease.name == name, (Lease.holder == holder) | (Lease.expires_at <= now))
        .values(holder=holder, expires_at=expires)
    )
    if result.rowcount == 1:  # type: ignore[attr-defined]
        return True
    try:
        with session.begin_nested():
            session.add(Lease(name=name, holder=holder, expires_at=expires))
    except IntegrityError:
        return False
    return True


def release(session: Session, *, name: str, holder: str) -> None:
    session.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))


@contextmanager
def held(
    sessions: sessionmaker[Session], *, name: str, holder: str, ttl_s: float, wait_s: float
) -> Iterator[None]:
    """Hold ``name`` for the block, waiting up to ``wait_s`` for it (a cross-replica mutex)."""
    deadline = time.monotonic() + wait_s
    while True:
        with unit_of_work(sessions) as session:
            if try_acquire(session, name=name, holder=holder, ttl_s=ttl_s):
                break
        if time.monotonic() >= deadline:
            raise Conflict(f"{name} is busy on another replica", hint="retry in a moment")
        time.sleep(0.2)
    try:
        yield
    finally:
        with unit_of_work(sessions) as session:
            release(session, name=name, holder=holder)
