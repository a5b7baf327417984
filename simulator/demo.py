"""``fleet-demo``: a whole fleet on this machine, updated by a staged rollout, live.

Steps: an Overlord on SQLite with its dashboard (a uvicorn child process); fresh signing keys
and a TUF repository; two small releases made by ``fleet-image assemble`` from a synthetic
rootfs; N simulated devices running the real updater on sparse copies of v1's disk image;
then a rollout of v2 (canary, then percentages) in which a few devices fail their health
check, roll back and make the Overlord halt it. ``--failing 0`` shows a completed rollout.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from fleetcore.net import free_port
from fleetcore.version import Version
from fleetcore.wire import UpdateState
from overlord.auth.models import KeyRole
from overlord.rollouts.models import DeviceOutcome, ReleaseKind, RolloutState
from overlord.rollouts.schemas import RolloutCreate, RolloutPublic
from simulator.device import DeviceTiming, SimulatedDevice
from simulator.errors import SetupError, SimulatorError
from simulator.operator import OperatorClient
from simulator.releases import build_release, publish
from simulator.scenario import Expectation, Scenario
from simulator.server import serve
from simulator.site import Site, prepare_site

PROG = "fleet-demo"
OLD, NEW = Version("1.0.0"), Version("2.0.0")
FINAL = frozenset({RolloutState.COMPLETED, RolloutState.HALTED, RolloutState.ABORTED})
# Per-device progress lines are printed for fleets up to this size; larger ones get totals.
TRACE_LIMIT = 50


class DemoFailed(SimulatorError):
    """The rollout did not end as the scenario says it must, or a device crashed."""


@dataclass(frozen=True)
class DemoOptions:
    devices: int = 20
    failing: int | None = None  # None: about one in ten, at least one
    headless: bool = False
    port: int = 8080
    workdir: Path | None = None
    keep: bool = False
    timeout_s: float = 600.0
    success_window_s: int = 3
    start_delay_s: float = 10.0
    poll_s: float = 1.0

    @property
    def failing_count(self) -> int:
        if self.failing is not None:
            return min(self.failing, self.devices)
        return max(1, self.devices // 10)


@dataclass(frozen=True)
class DemoResult:
    rollout: RolloutPublic
    expected: Expectation
    versions: dict[str, int]
    failing: int
    elapsed_s: float
    crashed: list[str]

    @property
    def as_expected(self) -> bool:
        if self.crashed or self.rollout.state is not self.expected.state:
            return False
        return self.expected.state is not RolloutState.HALTED or (
            self.rollout.stage_label == self.expected.stage
        )

    def summary(self) -> str:
        r = self.rollout
        total = sum(self.versions.values())
        on_new = self.versions.get(str(NEW), 0)
        outcome = (
            f"halted at the {r.stage_label} stage"
            if r.state is RolloutState.HALTED
            else (r.state.value)
        )
        verdict = "as expected" if self.as_expected else f"EXPECTED {self.expected}"
        crashed = f", {len(self.crashed)} devices crashed" if self.crashed else ""
        return (
            f"demo: rollout {r.name} {outcome} ({verdict}): {on_new}/{total} devices run {NEW}, "
            f"{r.devices.get(DeviceOutcome.FAILED, 0)} failed their health check and rolled back"
            f"{crashed}; {self.elapsed_s:.0f} s"
        )


class Progress:
    """Timestamped progress lines on stdout."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", flush=True)


# -- the fleet ------------------------------------------------------------------------------


class Fleet:
    """The simulated devices, one thread each."""

    def __init__(self, devices: list[SimulatedDevice], url: str, timing: DeviceTiming) -> None:
        self.devices = devices
        self.url = url
        self.timing = timing
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=d.run, args=(url, self.stop, timing), name=d.name, daemon=True)
            for d in devices
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def crashed(self) -> list[str]:
        return [f"{d.name}: {d.crashed}" for d in self.devices if d.crashed]

    def wait_enrolled(self, timeout_s: float) -> dict[str, SimulatedDevice]:
        deadline = time.monotonic() + timeout_s
        while True:
            ids = {ident.device_id: d for d in self.devices if (ident := d.identity())}
            if len(ids) == len(self.devices):
                return ids
            if crashed := self.crashed():
                raise DemoFailed(f"a simulated device crashed while enrolling: {crashed[0]}")
            if time.monotonic() > deadline:
                raise DemoFailed(
                    f"only {len(ids)} of {len(self.devices)} devices enrolled in {timeout_s:.0f} s"
                )
            time.sleep(0.2)


def make_devices(
    workdir: Path, count: int, *, build: Path, site: Site, url: str, enrollment: str
) -> list[SimulatedDevice]:
    root_json = (site.repo_dir / "metadata" / "1.root.json").read_bytes()
    devices = []
    for i in range(1, count + 1):
        device = SimulatedDevice(name=f"sim-{i:04d}", base=workdir / "devices" / f"sim-{i:04d}")
        device.provision(
            build=build,
            version=str(OLD),
            root_json=root_json,
            overlord_url=url,
            enrollment_token=enrollment,
        )
        devices.append(device)
    return devices


# -- watching -------------------------------------------------------------------------------


class Watcher:
    """Prints the rollout's stage and counts, and each device's updater state, as they change."""

    def __init__(self, say: Progress, operator: OperatorClient, fleet: Fleet) -> None:
        self.say, self.operator, self.fleet = say, operator, fleet
        self._rollout_line = ""
        self._states: dict[str, UpdateState] = {}

    def poll(self, rollout_id: int) -> RolloutPublic:
        rollout = self.operator.rollout(rollout_id)
        counts = ", ".join(f"{k.value} {v}" for k, v in rollout.devices.items() if v)
        line = f"rollout {rollout.name}: {rollout.state.value}, {rollout.stage_label} stage"
        line += f" ({counts or 'no devices admitted yet'})"
        if rollout.halt_reason:
            line += f"; halted: {rollout.halt_reason}"
        if line != self._rollout_line:
            self._rollout_line = line
            self.say(line)
        if len(self.fleet.devices) <= TRACE_LIMIT:
            self._trace_devices()
        return rollout

    def _trace_devices(self) -> None:
        for device in self.fleet.devices:
            state, target, failure = device.update_state()
            if self._states.get(device.name, UpdateState.IDLE) is state:
                continue
            self._states[device.name] = state
            detail = f" ({failure})" if failure and state is UpdateState.ROLLED_BACK else ""
            self.say(f"  {device.name}: {state.value} {target or ''}{detail}")


# -- the run ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _workdir(options: DemoOptions) -> Iterator[Path]:
    if options.workdir is not None:
        workdir = options.workdir
        if workdir.exists() and any(workdir.iterdir()):
            raise SetupError(f"--workdir {workdir} is not empty", hint="give a new folder")
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir.resolve()
        return
    workdir = Path(tempfile.mkdtemp(prefix="overlord-demo-"))
    try:
        yield workdir
    finally:
        if not options.keep:
            shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def _device_logs(path: Path) -> Iterator[None]:
    """The updaters' own log lines go to a file; the terminal shows the progress lines."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(name)s: %(message)s"))
    loggers = [logging.getLogger(n) for n in ("updater", "signing", "simulator.device")]
    saved = [(lg.propagate, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.propagate = False
        lg.setLevel(logging.INFO)
    try:
        yield
    finally:
        for lg, (propagate, level) in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.propagate, lg.level = propagate, level
        handler.close()


def run_demo(options: DemoOptions, say: Progress | None = None) -> DemoResult:
    """Run the demo; returns when the rollout has ended (headless) or on Ctrl-C (interactive)."""
    say = say or Progress()
    if options.devices < 1:
        raise SetupError("--devices must be at least 1")
    with _workdir(options) as workdir, _device_logs(workdir / "devices.log"):
        say(f"work folder {workdir} (server log overlord.log, device logs devices.log)")
        site = prepare_site(workdir, f"sqlite:///{workdir / 'overlord.db'}")
        say("signing keys and an empty TUF repository created")
        builds = {}
        for version in (OLD, NEW):
            say(f"assembling release {version} from a synthetic rootfs (fleet-image assemble)")
            builds[version] = build_release(workdir, version)
        publish(site.repo_dir, site.keys, builds[OLD])
        say(f"release {OLD} signed and published")
        admin = site.token(KeyRole.ADMIN, "demo operator")
        enrollment = site.token(KeyRole.ENROLLMENT, "demo devices")
        env = site.env(engine_interval_s=1, cache_ttl_s=0.5, poll_interval_s=5)
        port = options.port or free_port()
        with serve(env=env, port=port, log=workdir / "overlord.log") as url:
            say(f"Overlord up: dashboard {url}/dashboard")
            say(f"log in with this admin token: {admin}")
            return _run_fleet(options, say, workdir, site, url, admin, enrollment, builds)


def _run_fleet(
    options: DemoOptions,
    say: Progress,
    workdir: Path,
    site: Site,
    url: str,
    admin: str,
    enrollment: str,
    builds: dict[Version, Path],
) -> DemoResult:
    say(f"flashing {options.devices} simulated devices with {OLD} (sparse disk copies)")
    devices = make_devices(
        workdir, options.devices, build=builds[OLD], site=site, url=url, enrollment=enrollment
    )
    fleet = Fleet(devices, url, DeviceTiming(poll_s=options.poll_s))
    operator = OperatorClient(url, admin)
    try:
        fleet.start()
        by_id = fleet.wait_enrolled(timeout_s=120)
        say(f"{len(by_id)} devices enrolled and reporting {OLD}")
        scenario = Scenario(rollout_name=f"demo-{NEW}")
        failing = scenario.pick_failing(list(by_id), options.failing_count)
        for device_id in failing:
            by_id[device_id].set_health(failing=True)
        expected = scenario.expect(list(by_id), failing)
        names = ", ".join(by_id[d].name for d in failing) or "none"
        say(f"devices whose health check will fail: {names}; expected: {expected}")
        if not options.headless and options.start_delay_s > 0:
            say(f"the rollout starts in {options.start_delay_s:.0f} s: open the dashboard now")
            time.sleep(options.start_delay_s)
        started = time.monotonic()
        publish(site.repo_dir, site.keys, builds[NEW])
        say(f"release {NEW} signed and published")
        rollout = operator.create_rollout(
            RolloutCreate(
                name=scenario.rollout_name,
                kind=ReleaseKind.OS,
                version=NEW,
                canary_devices=scenario.canary,
                stages=list(scenario.stages),
                success_window_s=options.success_window_s,
                failure_threshold=scenario.threshold,
            )
        )
        say(f"rollout {rollout.name} created: canary {scenario.canary}, then {scenario.stages}%")
        watcher = Watcher(say, operator, fleet)
        deadline = started + options.timeout_s
        while rollout.state not in FINAL:
            if crashed := fleet.crashed():
                raise DemoFailed(f"a simulated device crashed: {crashed[0]}")
            if time.monotonic() > deadline:
                raise DemoFailed(
                    f"rollout still {rollout.state.value} at the {rollout.stage_label} stage "
                    f"after {options.timeout_s:.0f} s (expected: {expected})"
                )
            time.sleep(0.5)
            rollout = watcher.poll(rollout.id)
        elapsed = time.monotonic() - started
        result = DemoResult(
            rollout=rollout,
            expected=expected,
            versions=_settled_versions(operator, rollout, len(devices)),
            failing=len(failing),
            elapsed_s=elapsed,
            crashed=fleet.crashed(),
        )
        if not options.headless:
            say(result.summary())
            say(f"the fleet keeps running; dashboard {url}/dashboard; Ctrl-C stops the demo")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
        return result
    finally:
        operator.close()
        fleet.close()


def _settled_versions(
    operator: OperatorClient, rollout: RolloutPublic, devices: int, wait_s: float = 15.0
) -> dict[str, int]:
    """Versions the devices report; after a completed rollout, once the last heartbeats came.

    A device's commit event can complete the rollout a cycle before its heartbeat carries
    the new version, so the count is retried for a few seconds.
    """
    deadline = time.monotonic() + wait_s
    while True:
        versions = dict(operator.versions())
        settled = versions.get(str(NEW), 0) == devices
        if rollout.state is not RolloutState.COMPLETED or settled or time.monotonic() > deadline:
            return versions
        time.sleep(0.5)


# -- command line ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    defaults = DemoOptions()
    parser.add_argument("--devices", type=int, default=defaults.devices)
    parser.add_argument(
        "--failing", type=int, help="devices whose health check fails (default: 1 in 10)"
    )
    parser.add_argument("--headless", action="store_true", help="run unattended, print a summary")
    parser.add_argument("--port", type=int, default=defaults.port, help="0 picks a free port")
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temp work folder")
    parser.add_argument("--timeout", type=float, default=defaults.timeout_s, help="seconds")
    parser.add_argument(
        "--success-window", type=int, default=defaults.success_window_s, help="seconds per stage"
    )
    parser.add_argument("--start-delay", type=float, default=defaults.start_delay_s)
    return parser


def main(argv: Sequence[str]) -> None:
    """Entry point behind ``fleet-demo``; raises DemoFailed for an unexpected end."""
    args = build_parser().parse_args(argv)
    options = DemoOptions(
        devices=args.devices,
        failing=args.failing,
        headless=args.headless,
        port=args.port,
        workdir=args.workdir,
        keep=args.keep,
        timeout_s=args.timeout,
        success_window_s=args.success_window,
        start_delay_s=args.start_delay,
    )
    result = run_demo(options)
    if not result.as_expected:
        raise DemoFailed(result.summary())
    if options.headless:
        print(result.summary(), file=sys.stdout, flush=True)
