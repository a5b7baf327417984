"""``fleet-demo --headless``: real updaters on assembled disks against a real Overlord."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fleetcore.layout import Slot
from fleetcore.release import ImageName, load_manifest
from fleetcore.wire import UpdateState
from overlord.rollouts.models import RolloutState
from simulator.cli import main as demo_main
from simulator.demo import NEW, DemoOptions, run_demo
from simulator.device import FAILING_HOOK, HEALTH_HOOK, SimulatedDevice
from updater import autoboot
from updater.disk import BootDisk, PartitionIO


def _devices(workdir: Path) -> list[SimulatedDevice]:
    return [SimulatedDevice(name=p.name, base=p) for p in sorted((workdir / "devices").iterdir())]


def _health_fails(device: SimulatedDevice) -> bool:
    hook = device.roots.fleet / "health.d" / "required.d" / HEALTH_HOOK
    return hook.read_text() == "#!/bin/sh\n" + FAILING_HOOK


def _system_sha256(device: SimulatedDevice, slot: Slot, size: int) -> str:
    disk = BootDisk.open(device.disk)
    with PartitionIO(disk.slot_partition("system", slot), writable=False) as part:
        return hashlib.sha256(part.read(0, size)).hexdigest()


def test_demo_help_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as exit_info:
        demo_main(["--help"])
    assert exit_info.value.code == 0
    assert "--headless" in capsys.readouterr().out


@pytest.mark.integration
def test_demo_rollout_completes_and_every_device_runs_the_new_slot(tmp_path: Path):
    workdir = tmp_path / "demo"
    options = DemoOptions(
        devices=6,
        failing=0,
        headless=True,
        port=0,
        workdir=workdir,
        success_window_s=1,
        timeout_s=240,
    )
    result = run_demo(options)
    assert result.rollout.state is RolloutState.COMPLETED, result.summary()
    assert result.as_expected
    assert result.versions == {str(NEW): 6}
    manifest = load_manifest(
        (workdir / "build" / str(NEW) / "release" / "manifest.json").read_bytes()
    )
    system = manifest.images[ImageName.SYSTEM]
    for device in _devices(workdir):
        assert autoboot.read(device.roots.autoboot).committed is Slot.B
        assert device.update_state()[0] is UpdateState.COMMITTED
        # The real updater wrote the new release into slot B of the device's disk image.
        assert _system_sha256(device, Slot.B, system.size) == system.sha256


@pytest.mark.integration
def test_demo_failing_health_checks_halt_the_rollout(tmp_path: Path, capsys):
    workdir = tmp_path / "demo"
    argv = ["--headless", "--devices", "6", "--failing", "1", "--port", "0"]
    argv += ["--workdir", str(workdir), "--success-window", "1", "--timeout", "240"]
    assert demo_main(argv) == 0
    out = capsys.readouterr().out
    summary = out.strip().splitlines()[-1]
    assert "halted at the 50% stage (as expected)" in summary
    assert "1 failed their health check" in summary
    # The failing device is the one whose health hook fails. Its recorded state depends on how
    # far its trial retries got before the demo stopped it (rolled back, or already rebooting
    # into the next attempt), so the proof is what it never did: commit the release.
    failed = [d for d in _devices(workdir) if _health_fails(d)]
    assert len(failed) == 1
    assert autoboot.read(failed[0].roots.autoboot).committed is Slot.A
    assert failed[0].update_state()[0] is not UpdateState.COMMITTED
