"""Which simulated devices fail, and what the rollout engine must then do. Pure rules.

The Overlord admits devices in a stable pseudo-random order (``plan.admission_order``), so
once the devices are enrolled the simulator knows which stage each one lands in. Failing
devices are placed right after the canary and the first percentage stage, so a person
watching sees a healthy canary, the first stage pass, then the halt. The expected end is
worked out with the Overlord's own stage arithmetic: a stage whose failures exceed the
threshold halts the rollout, otherwise it completes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from overlord.rollouts import plan
from overlord.rollouts.models import RolloutState

DEFAULT_STAGES = (10, 50, 100)
DEFAULT_THRESHOLD = 0.05


@dataclass(frozen=True)
class Expectation:
    state: RolloutState
    stage: str

    def __str__(self) -> str:
        if self.state is RolloutState.HALTED:
            return f"halted at the {self.stage} stage"
        return "completed"


@dataclass(frozen=True)
class Scenario:
    rollout_name: str
    canary: int = 1
    stages: tuple[int, ...] = DEFAULT_STAGES
    threshold: float = DEFAULT_THRESHOLD

    def order(self, device_ids: Sequence[str]) -> list[str]:
        """The order in which the rollout admits the devices."""
        return sorted(device_ids, key=lambda d: plan.admission_order(self.rollout_name, d))

    def bounds(self, total: int) -> list[tuple[int, int]]:
        """[start, end) positions in admission order of each stage (canary first)."""
        out, start = [], 0
        for stage in range(plan.stage_count(list(self.stages))):
            end = plan.stage_target(
                stage=stage, total=total, canary=self.canary, stages=list(self.stages)
            )
            out.append((start, end))
            start = end
        return out

    def pick_failing(self, device_ids: Sequence[str], count: int) -> list[str]:
        """``count`` devices admitted just after the canary and the first stage."""
        ordered = self.order(device_ids)
        if count <= 0:
            return []
        bounds = self.bounds(len(ordered))
        start = bounds[min(2, len(bounds) - 1)][0]
        start = min(start, max(0, len(ordered) - count))
        return ordered[start : start + count]

    def expect(self, device_ids: Sequence[str], failing: Sequence[str]) -> Expectation:
        """What the Overlord's engine must do when exactly ``failing`` fail their trials."""
        ordered = self.order(device_ids)
        bad = set(failing)
        labels = list(self.stages)
        for stage, (start, end) in enumerate(self.bounds(len(ordered))):
            members = ordered[start:end]
            failed = sum(d in bad for d in members)
            tally = plan.StageTally(admitted=len(members), failed=failed)
            if plan.should_halt(tally, self.threshold):
                return Expectation(RolloutState.HALTED, plan.stage_label(stage, labels))
        return Expectation(RolloutState.COMPLETED, plan.stage_label(len(labels) + 1, labels))
