"""Per-process state of one API replica: connections, read caches and metric objects.

Nothing here is coordination state: a second replica builds its own and both stay correct,
because every decision that must be made once (rollout steps, timestamp signing) goes through
a lease row in the database.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from overlord.auth.ratelimit import RateLimiter
from overlord.auth.service import Principal
from overlord.auth.signatures import SeenSignatures
from overlord.cache import TTLCache
from overlord.configvars.sealing import Sealer
from overlord.db import make_engine, make_read_sessionmaker, make_sessionmaker
from overlord.devices.changes import ChangeFollower
from overlord.devices.exporter import ExporterScreen
from overlord.devices.ingest import HeartbeatWriter
from overlord.devices.schemas import CachedDesiredState
from overlord.errors import DatabaseUnavailable
from overlord.invalidation import CacheKeeper
from overlord.metrics.registry import Metrics
from overlord.remote.waits import RemoteWaits
from overlord.settings import Settings


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    reads: sessionmaker[Session]
    metrics: Metrics
    device_limiter: RateLimiter
    anonymous_limiter: RateLimiter
    principals: TTLCache[str, Principal] = field(default_factory=TTLCache)
    desired: TTLCache[str, CachedDesiredState] = field(default_factory=TTLCache)
    replica_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    )

    database_down_until: float = 0.0
    heartbeats: HeartbeatWriter = field(init=False)
    exporters: ExporterScreen = field(init=False)
    changes: ChangeFollower = field(init=False)
    keeper: CacheKeeper = field(init=False)
    seen_signatures: SeenSignatures = field(default_factory=SeenSignatures)
    remote_waits: RemoteWaits = field(default_factory=RemoteWaits)
    _sealer: Sealer | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.heartbeats = HeartbeatWriter(self)
        self.exporters = ExporterScreen(self.settings.exporter_networks)
        self.changes = ChangeFollower(self.desired)
        self.keeper = CacheKeeper(
            engine=self.engine,
            principals=self.principals,
            desired=self.desired,
            follow_changes=self._follow_changes,
            poll_s=self.settings.change_poll_s,
            on_remote=self.remote_waits.wake,
        )
        self.metrics.remote_waits.set_function(lambda: self.remote_waits.held)

    def _follow_changes(self) -> None:
        if self.database_suspect():
            return
        try:
            self.changes.follow(self.reads)
        except DatabaseUnavailable:
            self.mark_database_down()
            raise

    @property
    def sealer(self) -> Sealer | None:
        """Seals and opens secret configuration values; None without ``config_key``."""
        if self._sealer is None and self.settings.config_key is not None:
            self._sealer = Sealer.from_setting(self.settings.config_key.get_secret_value())
        return self._sealer

    def principal_max_age_s(self) -> float:
        """How long a cached credential is trusted: long only while revocations are heard."""
        if self.keeper.live:
            return self.settings.auth_cache_max_s
        return self.settings.auth_cache_ttl_s

    def mark_database_down(self) -> None:
        """Skip database reads for a moment, so cached answers are not delayed by timeouts."""
        self.database_down_until = time.monotonic() + self.settings.outage_backoff_s

    def database_suspect(self) -> bool:
        return time.monotonic() < self.database_down_until

    @classmethod
    def create(cls, settings: Settings, *, engine: Engine | None = None) -> AppContext:
        engine = engine or make_engine(settings.database_url)
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_sessionmaker(engine),
            reads=make_read_sessionmaker(engine),
            metrics=Metrics(),
            device_limiter=RateLimiter(
                rate_per_s=settings.device_rate_per_s, burst=settings.device_rate_burst
            ),
            anonymous_limiter=RateLimiter(
                rate_per_s=settings.anonymous_rate_per_s, burst=settings.anonymous_rate_burst
            ),
        )
