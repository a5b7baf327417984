"""Fleet, rollout and TUF gauges, read from the database and repository at each scrape."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from overlord.db import unit_of_work, utcnow
from overlord.devices.models import Device
from overlord.devices.service import fleet_status
from overlord.errors import DatabaseUnavailable
from overlord.rollouts import service as rollouts_service
from overlord.rollouts.models import DeploymentRollout, DeviceOutcome, DeviceUpdate
from overlord.settings import Settings

TUF_ROLES = ("root", "targets", "snapshot", "timestamp")


class FleetCollector(Collector):
    def __init__(self, *, sessions: sessionmaker[Session], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with unit_of_work(self._sessions) as session:
                families = [*self._devices(session), *self._rollouts(session)]
        except DatabaseUnavailable:
            # Fleet gauges go missing rather than failing the scrape: counters still matter.
            families = []
        yield from families
        yield _tuf_expiry(self._settings.repo_dir / "metadata")

    def _devices(self, session: Session) -> Iterator[GaugeMetricFamily]:
        now = utcnow()
        by_status: Counter[tuple[str, str]] = Counter()
        by_role: Counter[tuple[str, str, str]] = Counter()
        rows = session.execute(
            select(
                Device.image_version,
                Device.last_seen,
                Device.safe_mode,
                Device.update_state,
                Device.roles,
            )
        )
        for image_version, last_seen, safe_mode, update_state, roles in rows:
            status = fleet_status(
                last_seen=last_seen,
                safe_mode=safe_mode,
                update_state=update_state,
                now=now,
                offline_after_s=self._settings.offline_after_s,
            )
            by_status[(image_version, status.value)] += 1
            for role in roles:
                by_role[
                    (str(role.get("name")), str(role.get("version")), str(role.get("health")))
                ] += 1
        devices = GaugeMetricFamily(
            "fleet_devices",
            "devices by reported image version and status",
            labels=["image_version", "status"],
        )
        for (version, state), count in sorted(by_status.items()):
            devices.add_metric([version, state], count)
        yield devices
        role_family = GaugeMetricFamily(
            "fleet_device_roles",
            "role instances by version and health",
            labels=["role", "version", "health"],
        )
        for key, count in sorted(by_role.items()):
            role_family.add_metric(list(key), count)
        yield role_family

    def _rollouts(self, session: Session) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily(
            "fleet_rollout_info",
            "one series per rollout",
            labels=["rollout", "release", "kind", "state"],
        )
        devices = GaugeMetricFamily(
            "fleet_rollout_devices",
            "devices of a rollout by outcome",
            labels=["rollout", "outcome"],
        )
        ratio = GaugeMetricFamily(
            "fleet_rollout_failure_ratio",
            "failed / attempted in the current stage",
            labels=["rollout"],
        )
        outcomes: dict[int, Counter[DeviceOutcome]] = {}
        for rollout_id, outcome, count in session.execute(
            select(DeviceUpdate.rollout_id, DeviceUpdate.outcome, func.count()).group_by(
                DeviceUpdate.rollout_id, DeviceUpdate.outcome
            )
        ):
            outcomes.setdefault(rollout_id, Counter())[outcome] = count
        for rollout in session.scalars(select(DeploymentRollout).order_by(DeploymentRollout.id)):
            release = f"{rollout.role_name or 'os'}-{rollout.version}"
            info.add_metric([rollout.name, release, rollout.kind.value, rollout.state.value], 1)
            counts = outcomes.get(rollout.id, Counter())
            for outcome in DeviceOutcome:
                devices.add_metric([rollout.name, outcome.value], counts.get(outcome, 0))
            tally = rollouts_service.stage_tally(session, rollout)
            ratio.add_metric([rollout.name], tally.failure_ratio)
        yield info
        yield devices
        yield ratio


def _tuf_expiry(metadata_dir: Path) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "fleet_tuf_metadata_expiry_timestamp_seconds",
        "expiry of the served TUF metadata, Unix time",
        labels=["role"],
    )
    for role in TUF_ROLES:
        try:
            signed = json.loads((metadata_dir / f"{role}.json").read_bytes())["signed"]
            expires = datetime.fromisoformat(signed["expires"].replace("Z", "+00:00"))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        family.add_metric([role], expires.timestamp())
    return family
