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
from overlord.metrics.bounded import CountFamily, dropped_family, label_value
from overlord.rollouts import service as rollouts_service
from overlord.rollouts.models import TERMINAL_STATES, DeploymentRollout, DeviceOutcome, DeviceUpdate
from overlord.settings import Settings

TUF_ROLES = ("root", "targets", "snapshot", "timestamp")


class FleetCollector(Collector):
    def __init__(self, *, sessions: sessionmaker[Session], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings

    def collect(self) -> Iterator[GaugeMetricFamily]:
        dropped: dict[str, int] = {}
        try:
            with unit_of_work(self._sessions) as session:
                families = [*self._devices(session, dropped), *self._rollouts(session, dropped)]
        except DatabaseUnavailable:
            # Fleet gauges go missing rather than failing the scrape: counters still matter.
            families = []
        yield from families
        yield dropped_family(sorted(dropped.items()))
        yield _tuf_expiry(self._settings.repo_dir / "metadata")

    def _devices(self, session: Session, dropped: dict[str, int]) -> Iterator[GaugeMetricFamily]:
        now = utcnow()
        max_series = self._settings.metrics_max_series
        devices = CountFamily(
            "fleet_devices",
            "devices by reported image version and status",
            ["image_version", "status"],
            max_series=max_series,
            kept=["status"],
        )
        roles = CountFamily(
            "fleet_device_roles",
            "role instances by version and health",
            ["role", "version", "health"],
            max_series=max_series,
        )
        # fleetcore.wire.BootMode and "unknown" (agents older than the field): a fixed set.
        boot_modes = CountFamily(
            "fleet_devices_boot_mode",
            "devices by the boot mode their last heartbeat reported (verity: the root verified)",
            ["boot_mode"],
            max_series=max_series,
            kept=["boot_mode"],
        )
        rows = session.execute(
            select(
                Device.image_version,
                Device.last_seen,
                Device.safe_mode,
                Device.update_state,
                Device.roles,
                Device.boot_mode,
            )
        )
        for image_version, last_seen, safe_mode, update_state, device_roles, boot_mode in rows:
            boot_modes.add([boot_mode or "unknown"])
            status = fleet_status(
                last_seen=last_seen,
                safe_mode=safe_mode,
                update_state=update_state,
                now=now,
                offline_after_s=self._settings.offline_after_s,
            )
            devices.add([image_version, status.value])
            for role in device_roles:
                roles.add([role.get("name"), role.get("version"), role.get("health")])
        yield devices.family()
        yield roles.family()
        yield boot_modes.family()
        dropped.update(
            {
                devices.name: devices.dropped,
                roles.name: roles.dropped,
                boot_modes.name: boot_modes.dropped,
            }
        )

    def _rollouts(self, session: Session, dropped: dict[str, int]) -> Iterator[GaugeMetricFamily]:
        """Rollouts still in progress first, then the newest, up to the series cap.

        Each exported rollout is len(DeviceOutcome) series of fleet_rollout_devices and a stage
        tally query, so the cap also bounds the work of a scrape as history grows.
        """
        limit = max(self._settings.metrics_max_series // len(DeviceOutcome), 1)
        total = session.scalar(select(func.count()).select_from(DeploymentRollout)) or 0
        exported = list(
            session.scalars(
                select(DeploymentRollout)
                .order_by(DeploymentRollout.state.in_(TERMINAL_STATES), DeploymentRollout.id.desc())
                .limit(limit)
            )
        )
        for name in ("fleet_rollout_info", "fleet_rollout_devices", "fleet_rollout_failure_ratio"):
            dropped[name] = total - len(exported)
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
            select(DeviceUpdate.rollout_id, DeviceUpdate.outcome, func.count())
            .where(DeviceUpdate.rollout_id.in_([r.id for r in exported]))
            .group_by(DeviceUpdate.rollout_id, DeviceUpdate.outcome)
        ):
            outcomes.setdefault(rollout_id, Counter())[outcome] = count
        for rollout in sorted(exported, key=lambda r: r.id):
            name = label_value(rollout.name)
            release = label_value(f"{rollout.role_name or 'os'}-{rollout.version}")
            info.add_metric([name, release, rollout.kind.value, rollout.state.value], 1)
            counts = outcomes.get(rollout.id, Counter())
            for outcome in DeviceOutcome:
                devices.add_metric([name, outcome.value], counts.get(outcome, 0))
            tally = rollouts_service.stage_tally(session, rollout)
            ratio.add_metric([name], tally.failure_ratio)
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
