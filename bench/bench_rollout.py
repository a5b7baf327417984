"""Rollout at scale: from publishing a release until 95% of the fleet has committed it.

    FLEET_TEST_PG_URL=postgresql+psycopg://postgres@127.0.0.1:55432/postgres \\
        .venv/bin/python bench/bench_rollout.py [--devices 1000] [--scale 10] [--real-devices 20]

1,000 lightweight devices (``simulator.light``: wire API only, no disks) poll every 60 s and
take 120 s to download and write a release and 20 s to reboot into it and commit, against
an Overlord on PostgreSQL with 2 workers. Every time constant
(polls, installs, success windows, the engine's 10 s interval) is divided by ``--scale`` and
the measured times are multiplied back, so the figures read as real time. The achieved mean
poll interval is printed too: when the machine cannot keep up with the compressed clock it
exceeds 60 s, and the figures are upper bounds.

- figure: the Overlord's default staged policy (canary 1, then 10/50/100 %, 600 s success
  window per stage);
- the same policy with pre-staged installs (ADR 0082): devices download and write the
  release while they wait for admission, which then costs only the 20 s reboot and commit;
- baseline, same fleet, same run: everything at once (canary 1, then 100 %, no window), i.e.
  what the polls and installs alone cost; the ratio is the price of staging.

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
from dataclasses import replace
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
AT_ONCE = Policy("all at once", 1, (100,), 0)
PRESTAGED = replace(Policy.default_staged(), name="default prestaged")
# (version, policy, whether devices honour DesiredState.prestage)
PLANS = (
    ("2.0.0", Policy.default_staged(), False),
    ("3.0.0", PRESTAGED, True),
    ("4.0.0", AT_ONCE, False),
)


async def scenario(args: argparse.Namespace, work: Path, url: str) -> list[RolloutFigure]:
    site = prepare_site(work, url)
    enrollment = site.token(KeyRole.ENROLLMENT, "bench_rollout")
    admin = site.token(KeyRole.ADMIN, "bench_rollout")
    builds = {v: build_release(work, Version(v)) for v, _policy, _pre in PLANS}
    env = site.env(engine_interval_s=ENGINE_S / args.scale, cache_ttl_s=2.0 / args.scale)
    figures = []
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
            for version, policy, prestage in PLANS:
                fleet.prestage = prestage
                figure = await measure_rollout(
                    site=site,
                    operator=operator,
                    fleet=fleet,
                    build=builds[version],
                    version=Version(version),
                    policy=policy,
                    scale=args.scale,
                )
                achieved = fleet.achieved_poll_s() * args.scale
                print(
                    f"{policy.name}: 95% after {figure.to_fraction_s / 60:.1f} min "
                    f"(mean poll interval so far {achieved:.0f} s, asked {POLL_S:.0f} s)",
                    flush=True,
                )
                figures.append(figure)
            fleet.stop.set()
            await runner
            errors = sum(d.errors for d in fleet.devices)
            achieved = fleet.achieved_poll_s() * args.scale
            print(f"device-side request errors: {errors}")
            print(
                f"mean poll interval achieved: {achieved:.0f} s (asked {POLL_S:.0f} s, real time)"
            )
        finally:
            operator.close()
            await fleet.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--scale", type=float, default=10.0)
    parser.add_argument("--real-devices", type=int, default=20, help="0 skips the demo figure")
    args = parser.parse_args()
    pg_url = os.environ.get("FLEET_TEST_PG_URL")
    if not pg_url:
        sys.exit("set FLEET_TEST_PG_URL to a PostgreSQL server (see the README's test section)")
    with tempfile.TemporaryDirectory() as tmp, scratch_database(pg_url, "bench_rollout") as url:
        figures = asyncio.run(scenario(args, Path(tmp), url))
    print(
        f"\n{args.devices} lightweight devices, PostgreSQL, 2 workers; polls {POLL_S:.0f} s, "
        f"installs {INSTALL_S:.0f} s stageable + {REBOOT_S:.0f} s reboot, "
        f"time scale 1/{args.scale:g} (figures in real time):"
    )
    print(
        f"{'policy':<16} {'to 95%':>10} {'to 100%':>10} {'policy waits':>13} {'system':>10} "
        f"{'system share':>13}"
    )
    for fig, (_version, policy, _prestage) in zip(figures, PLANS, strict=True):
        waits = policy.waits_before(fig.fraction)
        system = fig.to_fraction_s - waits
        print(
            f"{fig.policy:<16} {fig.to_fraction_s / 60:>8.1f} m {fig.to_all_s / 60:>8.1f} m "
            f"{waits / 60:>11.1f} m {system / 60:>8.1f} m {system / fig.to_fraction_s:>13.2f}"
        )
    staged, prestaged, at_once = figures
    for fig in (staged, prestaged):
        print(f"{fig.policy} / all at once to 95%: {fig.to_fraction_s / at_once.to_fraction_s:.2f}")
    if args.real_devices:
        options = DemoOptions(devices=args.real_devices, failing=0, headless=True, port=0)
        result = run_demo(options)
        print(
            f"\nreal updater, {args.real_devices} devices on file-backed disks, SQLite, "
            f"{options.success_window_s} s success windows, 1 s polls: {result.summary()}"
        )


if __name__ == "__main__":
    main()
