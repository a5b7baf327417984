"""Engine, sessions and the declarative base shared by every domain's models."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, DateTime, Engine, Enum, Integer, MetaData, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from overlord.errors import DatabaseUnavailable

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both PostgreSQL and SQLite (which drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime()}


# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit id.
BIG_ID = BigInteger().with_variant(Integer(), "sqlite")


def str_enum(cls: type[StrEnum]) -> Enum:
    """A portable enum column (VARCHAR + CHECK) storing the member values."""
    return Enum(
        cls,
        native_enum=False,
        length=32,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_engine(url: str) -> Engine:
    """An engine that reconnects by itself after the server was lost.

    No pre-ping (it would cost a round trip per request): the first statement on a dead
    connection fails as a disconnect, SQLAlchemy then invalidates the whole pool, and the
    next checkout connects afresh.

    Statement parameters are hidden from SQL logs and error messages: they hold what clients
    sent, and an error that reaches the server log must not quote a request.
    """
    if url.startswith("sqlite"):
        memory = url in {"sqlite://", "sqlite:///:memory:"}
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=StaticPool if memory else None,
            hide_parameters=True,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url,
        pool_recycle=1800,
        pool_size=20,
        max_overflow=10,
        pool_timeout=5,
        connect_args={"connect_timeout": 3},
        hide_parameters=True,
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def make_read_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions for single-statement reads on the hot path: autocommit, no BEGIN/COMMIT."""
    return sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"))


def is_disconnect(err: DBAPIError) -> bool:
    """True when the error means the server is gone rather than that the statement was wrong."""
    if err.connection_invalidated:
        return True
    orig = err.orig
    if orig is None:
        return False
    if type(orig).__module__.startswith("psycopg"):
        return type(orig).__name__ in {"OperationalError", "InterfaceError"}
    message = str(orig)
    return "database is locked" in message or "unable to open database" in message


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session committed on success, rolled back on error; a lost server becomes 503."""
    session = factory()
    try:
        yield session
        session.commit()
    except DBAPIError as err:
        session.rollback()
        if is_disconnect(err):
            raise DatabaseUnavailable("the database is unreachable") from err
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
