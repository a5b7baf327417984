"""The health gate's verdicts on docker inspect data."""

from __future__ import annotations

import pytest

from fleetcore.wire import Health
from updater.roles.errors import HealthGateFailed
from updater.roles.health import Container, Phase, judge, summarize, wait_healthy


def inspect(service, status="running", health="healthy", restarts=0, code=0, probe=""):
    return {
        "Name": f"/p_{service}_1",
        "RestartCount": restarts,
        "State": {
            "Status": status,
            "ExitCode": code,
            "Health": {"Status": health, "Log": [{"Output": probe}]} if health else None,
        },
        "Config": {"Labels": {"com.docker.compose.service": service}},
    }


def c(*args, **kwargs):
    return Container.from_inspect(inspect(*args, **kwargs))


def test_all_healthy():
    assert judge([c("a"), c("b")], ["a", "b"]).phase is Phase.HEALTHY


@pytest.mark.parametrize(
    ("container", "reason"),
    [
        (c("a", status="exited", health=None, code=3), "exited with code 3"),
        (c("a", status="restarting", health="starting"), "crash-looping"),
        (c("a", restarts=1), "crash-looping"),
        (c("a", health="unhealthy", probe="connection refused"), "unhealthy: connection refused"),
    ],
)
def test_failures_are_immediate(container, reason):
    verdict = judge([container], ["a"])
    assert verdict.phase is Phase.FAILED
    assert reason in verdict.reason


def test_waiting_for_missing_or_starting():
    assert judge([], ["a"]).phase is Phase.WAITING
    assert judge([c("a", health="starting")], ["a"]).phase is Phase.WAITING


def test_a_past_restart_is_tolerated_at_runtime():
    assert judge([c("a", restarts=2)], ["a"], strict=False).phase is Phase.HEALTHY


def test_summaries():
    assert summarize([], ["a"]) is Health.UNHEALTHY
    assert summarize([c("a")], ["a"]) is Health.HEALTHY
    assert summarize([c("a", health="starting")], ["a"]) is Health.DEGRADED
    assert summarize([c("a", health="unhealthy")], ["a"]) is Health.UNHEALTHY


class FakeInspector:
    """Replays a scripted sequence of container listings."""

    def __init__(self, *rounds):
        self.rounds = list(rounds)

    def available(self) -> bool:
        return True

    def containers(self, project):
        return self.rounds.pop(0) if len(self.rounds) > 1 else self.rounds[0]


def test_wait_healthy_polls_until_healthy():
    inspector = FakeInspector([c("a", health="starting")], [c("a")])
    wait_healthy(inspector, "p", ["a"], timeout_s=10, sleep=lambda s: None)
    assert inspector.rounds == [[c("a")]]


def test_wait_healthy_times_out():
    ticks = iter(range(100))
    with pytest.raises(HealthGateFailed, match="not healthy after 5 s: service a is starting"):
        wait_healthy(
            FakeInspector([c("a", health="starting")]),
            "p",
            ["a"],
            timeout_s=5,
            clock=lambda: next(ticks),
            sleep=lambda s: None,
        )
