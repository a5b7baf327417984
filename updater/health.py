"""Trial-boot health checks in the greenboot style: required checks decide, wanted ones warn.

Sources: systemd units, the Docker engine, role health through a hook the roles component
provides, and executables in ``health.d/{required.d,wanted.d}`` below /etc/metrica-fleet
(the image's) and /data/fleet (the device's). On a verity root, a last required check that
dm-verity verified every block the trial read (ADR 0071: a verity error fails the trial,
whatever else passed). Everything runs under one deadline; the caller
pings the systemd watchdog between checks, so a hung agent is restarted, and a hung device
is reset by the hardware watchdog, which ends the trial like any failure.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fleetcore.errors import CommandError
from fleetcore.run import run
from updater import bootmode
from updater.config import CheckLevel, HealthConfig
from updater.paths import Roots

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    name: str
    level: CheckLevel
    ok: bool
    detail: str = ""


VERITY_CHECK = "dm-verity root"

# Role health, provided by the roles component: (name, ok, detail) per role.
RoleHealthHook = Callable[[], list[tuple[str, bool, str]]]


@dataclass
class HealthReport:
    results: list[CheckResult] = field(default_factory=list)

    @property
    def failed_required(self) -> list[CheckResult]:
        return [r for r in self.results if r.level is CheckLevel.REQUIRED and not r.ok]

    @property
    def ok(self) -> bool:
        return not self.failed_required

    def reason(self) -> str:
        return "; ".join(f"{r.name}: {r.detail or 'failed'}" for r in self.failed_required)


@dataclass(frozen=True)
class _Check:
    name: str
    level: CheckLevel
    argv: list[str]


class HealthChecker:
    def __init__(
        self,
        config: HealthConfig,
        roots: Roots,
        *,
        role_hook: RoleHealthHook | None = None,
        ping: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.roots = roots
        self.role_hook = role_hook
        self.ping = ping

    def _commands(self) -> Iterator[_Check]:
        for level, units in (
            (CheckLevel.REQUIRED, self.config.required_units),
            (CheckLevel.WANTED, self.config.wanted_units),
        ):
            for unit in units:
                yield _Check(f"unit {unit}", level, ["systemctl", "is-active", "--quiet", unit])
        if self.config.docker is not CheckLevel.OFF:
            yield _Check(
                "docker", self.config.docker, ["docker", "info", "--format", "{{.ServerVersion}}"]
            )
        for base in self.roots.health_dirs:
            for level, sub in (
                (CheckLevel.REQUIRED, "required.d"),
                (CheckLevel.WANTED, "wanted.d"),
            ):
                for hook in _executables(base / sub):
                    yield _Check(f"hook {hook.name}", level, [str(hook)])

    def run(self, deadline_s: float | None = None) -> HealthReport:
        limit = time.monotonic() + (deadline_s or self.config.deadline_s)
        report = HealthReport()
        for check in self._commands():
            self.ping()
            left = limit - time.monotonic()
            if left <= 0:
                report.results.append(
                    CheckResult(check.name, check.level, False, "deadline passed")
                )
                continue
            report.results.append(self._run_command(check, min(left, self.config.check_timeout_s)))
        if self.config.roles is not CheckLevel.OFF and self.role_hook is not None:
            self.ping()
            try:
                role_results = self.role_hook()
            except Exception as err:  # a broken hook must fail the check, not the agent
                role_results = [("roles", False, f"role health hook raised {err!r}")]
            for name, ok, detail in role_results:
                report.results.append(CheckResult(f"role {name}", self.config.roles, ok, detail))
        if bootmode.verity_root(self.roots):
            # Last, so every block the boot and the checks above read has been verified.
            report.results.append(_verity_root())
        for result in report.results:
            log.log(
                logging.INFO if result.ok else logging.WARNING,
                "health %s: %s %s",
                result.name,
                "ok" if result.ok else "FAILED",
                result.detail,
            )
        return report

    @staticmethod
    def _run_command(check: _Check, timeout: float) -> CheckResult:
        try:
            proc = run(check.argv, check=False, timeout=timeout)
        except CommandError as err:
            return CheckResult(check.name, check.level, False, str(err))
        if proc.returncode == 0:
            return CheckResult(check.name, check.level, True)
        output = (proc.stderr or proc.stdout or b"").decode(errors="replace").strip()
        detail = output.splitlines()[-1] if output else f"exited {proc.returncode}"
        return CheckResult(check.name, check.level, False, detail)


def _verity_root() -> CheckResult:
    if bootmode.corrupted():
        detail = "a block of the root did not verify against its root hash (dmsetup status: C)"
        return CheckResult(VERITY_CHECK, CheckLevel.REQUIRED, False, detail)
    return CheckResult(VERITY_CHECK, CheckLevel.REQUIRED, True)


def _executables(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and os.access(p, os.X_OK))
