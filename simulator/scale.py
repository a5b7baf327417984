"""Rollouts at scale: how long from publishing a release until most of a fleet has committed it.

The clock starts when the release is signed into the repository and the rollout is created
at once; for a scheduled rollout (``start_in_s``) it starts at the rollout's ``start_at``
instead, so the lead in which devices pre-stage is not counted. Real fleets take hours (60 s
polls, 600 s success windows), so benchmarks run with every time constant divided by one
``scale`` and report the measured time multiplied back.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fleetcore.version import Version
from overlord.rollouts.models import ReleaseKind, RolloutState
from overlord.rollouts.schemas import RolloutCreate
from simulator.errors import SimulatorError
from simulator.light import LightFleet
from simulator.operator import OperatorClient
from simulator.releases import publish
from simulator.site import Site

FINAL = frozenset({RolloutState.COMPLETED, RolloutState.HALTED, RolloutState.ABORTED})


@dataclass(frozen=True)
class Policy:
    name: str
    canary: int
    stages: tuple[int, ...]
    success_window_s: float

    @classmethod
    def default_staged(cls) -> Policy:
        """The Overlord's defaults (``RolloutCreate``): canary 1, 10/50/100 %, 600 s windows."""
        spec = RolloutCreate(name="defaults", kind=ReleaseKind.OS, version=Version("1"))
        return cls("default staged", spec.canary_devices, tuple(spec.stages), spec.success_window_s)

    def waits_before(self, fraction: float) -> float:
        """Bake time the policy imposes before ``fraction`` of the fleet may install: one
        success window for the canaries and one per stage below ``fraction``."""
        below = sum(1 for pct in self.stages if pct < fraction * 100)
        return ((1 if self.canary else 0) + below) * self.success_window_s


@dataclass(frozen=True)
class RolloutFigure:
    policy: str
    devices: int
    fraction: float
    to_fraction_s: float
    to_all_s: float
    state: RolloutState
    staged_at_start: int | None = None  # scheduled: devices that had staged by the start


async def measure_rollout(
    *,
    site: Site,
    operator: OperatorClient,
    fleet: LightFleet,
    build: Path,
    version: Version,
    policy: Policy,
    scale: float = 1.0,
    fraction: float = 0.95,
    timeout_s: float = 1800.0,
    start_in_s: float | None = None,
) -> RolloutFigure:
    """Publish ``build``, roll it out under ``policy`` and time the fleet's commits.

    With ``start_in_s`` (real seconds, divided by ``scale`` like every time constant) the
    rollout is scheduled that far ahead, and the figures count from its start.
    """
    wanted = math.ceil(fraction * len(fleet.devices))
    started = time.monotonic()
    await asyncio.to_thread(publish, site.repo_dir, site.keys, build)
    start_at = None
    if start_in_s is not None:
        lead = start_in_s / scale
        start_at = datetime.now(UTC) + timedelta(seconds=lead)
        started = time.monotonic() + lead
    spec = RolloutCreate(
        name=f"{policy.name.replace(' ', '-')}-{version}",
        kind=ReleaseKind.OS,
        version=version,
        canary_devices=policy.canary,
        stages=list(policy.stages),
        success_window_s=max(0, round(policy.success_window_s / scale)),
        start_at=start_at,
    )
    rollout = await asyncio.to_thread(operator.create_rollout, spec)
    to_fraction: float | None = None
    while True:
        await asyncio.sleep(0.25)
        committed = fleet.committed(version)
        if to_fraction is None and len(committed) >= wanted:
            to_fraction = committed[wanted - 1] - started
        rollout = await asyncio.to_thread(operator.rollout, rollout.id)
        if rollout.state in FINAL and len(committed) == len(fleet.devices):
            break
        if rollout.state in FINAL - {RolloutState.COMPLETED}:
            raise SimulatorError(
                f"rollout {rollout.name} {rollout.state.value}: {rollout.halt_reason}"
            )
        if start_at is not None and committed and committed[0] < started:
            raise SimulatorError(f"rollout {rollout.name}: a device committed before its start")
        if time.monotonic() - started > timeout_s:
            raise SimulatorError(
                f"rollout {rollout.name}: {len(committed)} of {len(fleet.devices)} committed "
                f"after {timeout_s:.0f} s ({rollout.state.value}, {rollout.stage_label} stage)"
            )
    assert to_fraction is not None
    return RolloutFigure(
        policy=policy.name,
        devices=len(fleet.devices),
        fraction=fraction,
        to_fraction_s=to_fraction * scale,
        to_all_s=(fleet.committed(version)[-1] - started) * scale,
        state=rollout.state,
        staged_at_start=None if start_at is None else fleet.staged(version, by=started),
    )
