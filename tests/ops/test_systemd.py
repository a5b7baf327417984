"""The systemd units verify with systemd-analyze, pointed at this checkout's scripts."""

from __future__ import annotations

from pathlib import Path

from tests.ops.tools import DEPLOY_DIR, REPO_ROOT, find_tool, run_tool

UNITS = DEPLOY_DIR / "systemd"
INSTALL_ROOT = "/opt/metrica-fleet"


def localised(tmp_path: Path) -> list[Path]:
    """Copies of the units with the install path replaced by this checkout."""
    copies = []
    for unit in sorted(UNITS.iterdir()):
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace(INSTALL_ROOT, str(REPO_ROOT)))
        copies.append(copy)
    return copies


def test_units_verify(tmp_path: Path):
    units = localised(tmp_path)
    assert {u.name for u in units} == {
        "fleet-overlord.service",
        "fleet-overlord-backup.service",
        "fleet-overlord-backup.timer",
    }
    result = run_tool([find_tool("systemd-analyze"), "verify", *units])
    assert result.returncode == 0, result.stderr


def test_unit_with_a_missing_script_fails_verify(tmp_path: Path):
    unit = tmp_path / "fleet-overlord.service"
    text = (UNITS / unit.name).read_text().replace(INSTALL_ROOT, str(REPO_ROOT))
    unit.write_text(text.replace("bin/deploy --no-build", "bin/no-such-script"))
    result = run_tool([find_tool("systemd-analyze"), "verify", unit])
    assert result.returncode != 0


def test_units_call_the_deploy_scripts():
    service = (UNITS / "fleet-overlord.service").read_text()
    assert f"ExecStart={INSTALL_ROOT}/overlord/deploy/bin/deploy --no-build" in service
    assert f"ExecStop={INSTALL_ROOT}/overlord/deploy/bin/stop" in service
    backup = (UNITS / "fleet-overlord-backup.service").read_text()
    assert f"ExecStart={INSTALL_ROOT}/overlord/deploy/bin/backup" in backup
