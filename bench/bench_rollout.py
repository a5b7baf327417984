"""Rollout at scale: from publishing a release until 95% of the fleet has committed it.

    FLEET_TEST_PG_URL=postgresql+psycopg://postgres@127.0.0.1:55432/postgres \\
        .venv/bin/python bench/bench_rollout.py [--devices 1000] [--scale 2] [--real-devices 20] \\
        [--plans scheduled-prestaged]

With no options it measures the issue's figure: 1,000 devices, the default policy scheduled
and pre-staged, at 1/2 of real time, beside the all-at-once baseline (about 25 min of wall
time). ``--plans default-staged,default-prestaged --scale 10`` measures the plans without a
scheduled start, which keep the compressed clock at 1/10.

1,000 lightweight devices (``simulator.light``: wire API only, no disks) poll every 60 s and
take 120 s to download and write a release and 20 s to reboot into it and commit, against
an Overlord on PostgreSQL with 2 workers. Every time constant
(polls, installs, success windows, the engine's 10 s interval) is divided by ``--scale`` and
the measured times are multiplied back, so the figures read as real time. The compressed
clock is checked: the fleet sums the waits its devices asked for between cycles and the time
that actually passed (less their installs); when the ratio of the two passes 1.10 the
machine could not keep the compressed clock and the figures are upper bounds (marked ``*``).

- figure: the Overlord's default staged policy (canary 1, then 10/50/100 %, 600 s success
  window per stage);
- the same policy with pre-staged installs (ADR 0082): devices download and write the
  release while they wait for admission, which then costs only the 20 s reboot and commit;
- the same policy, scheduled (``start_at`` 300 s after the rollout is created: a 60 s poll
  and a 120 s +-50 % install fit in it), so every device, the canary included, pre-stages
  before the start; measured **from the start**, as an operator who schedules a rollout sees
  it (the lead is the download, which the other plans count in their canary stage);
- baseline, same fleet, same run, always: everything at once (canary 1, then 100 %, no
  window), i.e. what the polls and installs alone cost; the ratio is the price of staging.

``--plans`` picks the plans to run besides the baseline (default: scheduled-prestaged).
Staged devices poll every 10 s (ADR 0082): 1,000 of them ask about 200 requests a second in
real time, times the scale, of one simulator process and 2 workers. This 2-core host keeps
the clock (ratio below 1.10) at about 1/2 for them; the plans without a scheduled start keep
it at 1/10.

Each time to 95% is split into policy waits (the success windows the policy imposes before
95% of the fleet may install: canary, 10 % and 50 % stages) and system time (the rest: polls,
downloads, installs, reports, the engine's ticks). The issue's goal: system time <= 10%.

``--real-devices N`` adds the real updater's figure: ``fleet-demo --headless`` with N
devices (Agent and Engine writing file-backed disks), success window 3 s, polls every 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from fleetcore.version import Version  # noqa: E402
from overlord.auth.models import KeyRole  # noqa: E402
from simulator.demo import DemoOptions, run_demo  # noqa: E402
from simulator.light import LightFleet, LightTiming  # noqa: E402
from simulator.operator import OperatorClient  # noqa: E402
from simulator.releases import build_release  # noqa: E402
from simulator.scale import Policy, RolloutFigure, measure_rollout  # noqa: E402
from simulator.server import serve  # noqa: E402
from simulator.site import prepare_site, scratch_database  # noqa: E402

POLL_S, INSTALL_S, REBOOT_S, ENGINE_S = 60.0, 120.0, 20.0, 10.0
LEAD_S = 300.0  # a scheduled rollout's start, after its creation


@dataclass(frozen=True)
class Plan:
    key: str  # the --plans name
    policy: Policy
    prestage: bool  # whether devices honour DesiredState.prestage
    start_in_s: float | None = None  # scheduled: start this long after creation


DEFAULT = Policy.default_staged()
SCHEDULED = Plan(
    "scheduled-prestaged",
    replace(DEFAULT, name="scheduled prestaged"),
    prestage=True,
    start_in_s=LEAD_S,
)
PLANS = (
    Plan("default-staged", DEFAULT, prestage=False),
    Plan("default-prestaged", replace(DEFAULT, name="default prestaged"), prestage=True),
    SCHEDULED,
)
BASELINE = Plan("at-once", Policy("all at once", 1, (100,), 0), prestage=False)


CLOCK_HELD = 1.10  # time taken over time asked between cycles, at most, for a figure to stand


@dataclass(frozen=True)
class Measured:
    plan: Plan
    figure: RolloutFigure
    clock_ratio: float

    @property
    def upper_bound(self) -> bool:
        return not self.clock_ratio <= CLOCK_HELD  # a NaN ratio (no cycle) is one too


async def scenario(args: argparse.Namespace, work: Path, url: str) -> list[Measured]:
    site = prepare_site(work, url)
    enrollment = site.token(KeyRole.ENROLLMENT, "bench_rollout")
    admin = site.token(KeyRole.ADMIN, "bench_rollout")
    versions = [Version(f"{n}.0.0") for n in range(2, 2 + len(args.plans))]
    builds = {v: build_release(work, v) for v in versions}
    env = site.env(engine_interval_s=ENGINE_S / args.scale, cache_ttl_s=2.0 / args.scale)
    measured = []
    with serve(env=env, workers=2, log=work / "overlord.log") as base:
        timing = LightTiming(
            poll_s=POLL_S / args.scale,
            install_s=INSTALL_S / args.scale,
            reboot_s=REBOOT_S / args.scale,
            scale=args.scale,
        )
        fleet = LightFleet(base, timing)
        operator = OperatorClient(base, admin)
        try:
            started = time.monotonic()
            await fleet.enroll(enrollment, args.devices, Version("1.0.0"))
            print(f"{args.devices} devices enrolled in {time.monotonic() - started:.1f} s")
            runner = asyncio.create_task(fleet.run())
            for version, plan in zip(versions, args.plans, strict=True):
                fleet.prestage = plan.prestage
                before = fleet.clock()
                figure = await measure_rollout(
                    site=site,
                    operator=operator,
                    fleet=fleet,
                    build=builds[version],
                    version=version,
                    policy=plan.policy,
                    scale=args.scale,
                    start_in_s=plan.start_in_s,
                    timeout_s=7200.0 / args.scale,
                )
                ratio = fleet.clock_ratio(before, fleet.clock())
                staged = figure.staged_at_start
                print(
                    f"{plan.policy.name}: 95% after {figure.to_fraction_s / 60:.1f} min "
                    f"(clock ratio {ratio:.2f}: time between cycles over time asked)"
                    + ("" if staged is None else f"; {staged} devices staged by the start"),
                    flush=True,
                )
                measured.append(Measured(plan, figure, ratio))
            fleet.stop.set()
            await runner
            errors = sum(d.errors for d in fleet.devices)
            print(f"device-side request errors: {errors}")
            reasons = Counter(d.last_error for d in fleet.devices if d.last_error)
            for reason, count in reasons.most_common(3):
                print(f"  last error of {count} device(s): {reason}")
        finally:
            operator.close()
            await fleet.close()
    return measured


def plans(text: str) -> list[Plan]:
    """``--plans``: names from :data:`PLANS`, comma-separated; the baseline comes last."""
    known = {p.key: p for p in PLANS}
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in known and name != BASELINE.key]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown plan {', '.join(unknown)} (choose from {', '.join(known)})"
        )
    return [known[name] for name in dict.fromkeys(chosen) if name in known] + [BASELINE]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument(
        "--scale",
        type=float,
        default=2.0,
        help="time compression (default 2: what 1,000 "
        "staged devices need on a 2-core host; 10 suits the plans without a scheduled start)",
    )
    parser.add_argument("--real-devices", type=int, default=20, help="0 skips the demo figure")
    parser.add_argument(
        "--plans",
        type=plans,
        default=plans(SCHEDULED.key),
        help=f"comma-separated, from {', '.join(p.key for p in PLANS)} (default: "
        f"{SCHEDULED.key}); the all-at-once baseline always runs, last",
    )
    args = parser.parse_args()
    pg_url = os.environ.get("FLEET_TEST_PG_URL")
    if not pg_url:
        sys.exit("set FLEET_TEST_PG_URL to a PostgreSQL server (see the README's test section)")
    with tempfile.TemporaryDirectory() as tmp, scratch_database(pg_url, "bench_rollout") as url:
        measured = asyncio.run(scenario(args, Path(tmp), url))
    print(
        f"\n{args.devices} lightweight devices, PostgreSQL, 2 workers; polls {POLL_S:.0f} s, "
        f"installs {INSTALL_S:.0f} s stageable + {REBOOT_S:.0f} s reboot, "
        f"time scale 1/{args.scale:g} (figures in real time):"
    )
    print(
        f"{'policy':<20} {'to 95%':>10} {'to 100%':>10} {'policy waits':>13} {'system':>10} "
        f"{'system share':>13}"
    )
    for row in measured:
        fig = row.figure
        waits = row.plan.policy.waits_before(fig.fraction)
        system = fig.to_fraction_s - waits
        mark = "*" if row.upper_bound else " "
        print(
            f"{fig.policy:<20} {fig.to_fraction_s / 60:>8.1f} m {fig.to_all_s / 60:>8.1f} m "
            f"{waits / 60:>11.1f} m {system / 60:>8.1f} m {system / fig.to_fraction_s:>13.3f}"
            f"{mark} (clock {row.clock_ratio:.2f})"
        )
    *staged, at_once = measured
    for row in staged:
        ratio = row.figure.to_fraction_s / at_once.figure.to_fraction_s
        print(f"{row.figure.policy} / all at once to 95%: {ratio:.2f}")
    if any(row.upper_bound for row in measured):
        print(f"* clock ratio above {CLOCK_HELD:.2f}: the machine fell behind, an upper bound")
    if args.real_devices:
        options = DemoOptions(devices=args.real_devices, failing=0, headless=True, port=0)
        result = run_demo(options)
        print(
            f"\nreal updater, {args.real_devices} devices on file-backed disks, SQLite, "
            f"{options.success_window_s} s success windows, 1 s polls: {result.summary()}"
        )


if __name__ == "__main__":
    main()
