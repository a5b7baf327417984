"""The boot mode the heartbeat reports, and dm-verity corruption of the running root."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fleetcore.layout import Slot
from fleetcore.version import Version
from fleetcore.wire import BootMode, EventKind, UpdateState
from tests.updater.agents import make_agent, setup_device
from updater import bootmode
from updater.config import FirmwareBackend, FirmwareConfig
from updater.engine import EngineResult
from updater.errors import FirmwareError
from updater.firmware.tryboot import TrybootFirmware
from updater.paths import Roots

VERITY_ARG = "fleet.verity=1:sha256:4096:7681:31461376:" + "5a" * 32 + ":" + "0f" * 32
CMDLINES = {
    "plain": "console=ttyAMA0 root=PARTLABEL=system_a rootfstype=squashfs ro rootwait",
    "verity": f"console=ttyAMA0 root=PARTLABEL=system_a ro rootwait {VERITY_ARG}",
    "malformed": "console=ttyAMA0 root=PARTLABEL=system_a fleet.verity=1:sha256:4096:12",
}


def _roots(tmp: Path, cmdline: str) -> Roots:
    roots = Roots(proc=tmp / "proc", device_tree=tmp / "device-tree")
    roots.proc.mkdir()
    (roots.proc / "cmdline").write_text(cmdline + "\n")
    return roots


@pytest.mark.parametrize(
    ("cmdline", "signed", "mode"),
    [
        ("plain", False, BootMode.UNSIGNED),
        ("verity", False, BootMode.VERITY),
        ("verity", True, BootMode.SECURE_VERITY),
        ("plain", True, BootMode.UNSIGNED),  # signed boot, root not pinned
        ("malformed", False, BootMode.UNSIGNED),
    ],
)
def test_boot_mode(tmp_path: Path, cmdline: str, signed: bool, mode: BootMode):
    assert bootmode.boot_mode(_roots(tmp_path, CMDLINES[cmdline]), signed=signed) is mode


@pytest.mark.parametrize(
    ("signed", "seen"),
    [
        (None, False),
        (b"\x00\x00\x00\x00", False),
        (b"\x00\x00\x00\x01", True),
        (b"\x00\x00\x00\x09", True),
        (b"\x01", False),  # truncated: not trusted
    ],
)
def test_tryboot_backend_reads_signed_boot_from_the_device_tree(
    tmp_path: Path, signed: bytes | None, seen: bool
):
    roots = Roots(device_tree=tmp_path / "device-tree")
    chosen = roots.device_tree / "chosen/bootloader"
    chosen.mkdir(parents=True)
    (chosen / "partition").write_bytes((2).to_bytes(4, "big"))
    (chosen / "tryboot").write_bytes((0).to_bytes(4, "big"))
    if signed is not None:
        (chosen / "signed").write_bytes(signed)
    state = TrybootFirmware(FirmwareConfig(backend=FirmwareBackend.TRYBOOT), roots).boot_state()
    assert (state.boot_partition, state.tryboot, state.signed) == (2, False, seen)


@pytest.mark.parametrize(
    ("signed", "mode"), [(None, BootMode.VERITY), (False, BootMode.VERITY),
                         (True, BootMode.SECURE_VERITY)]
)  # fmt: skip
def test_heartbeat_carries_the_boot_mode(device, server, signed: bool | None, mode: BootMode):
    """The simulated firmware's boot.json says whether it played a signed-boot bootloader
    (the QEMU harness with a customer key); without the field, it did not."""
    setup_device(device, server)
    (device.roots.proc / "cmdline").write_text(CMDLINES["verity"] + "\n")
    boot_json = device.roots.boot_config / "simfw" / "boot.json"
    record = json.loads(boot_json.read_bytes())
    if signed is not None:
        record["signed"] = signed
    boot_json.write_text(json.dumps(record))
    make_agent(device).cycle()
    assert server.heartbeats[-1].boot_mode is mode


def test_a_boot_json_with_a_bad_signed_field_is_refused(device):
    boot_json = device.roots.boot_config / "simfw" / "boot.json"
    record = json.loads(boot_json.read_bytes())
    boot_json.write_text(json.dumps({**record, "signed": "yes"}))
    with pytest.raises(FirmwareError, match="signed must be a boolean"):
        device.engine().firmware.boot_state()


def _dmsetup(tmp: Path, monkeypatch: pytest.MonkeyPatch, status: str) -> None:
    """A dmsetup that prints ``status`` for ``status fleet-root``: this host's kernel has no
    device-mapper (the QEMU tier's guest has the real one)."""
    tools = tmp / "bin"
    tools.mkdir(exist_ok=True)
    script = tools / "dmsetup"
    script.write_text(
        '#!/bin/sh\n[ "$1 $2" = "status fleet-root" ] || { echo "no such device" >&2; exit 1; }\n'
        f"echo '{status}'\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.parametrize(
    ("status", "seen"), [("0 1024 verity V", False), ("0 1024 verity C", True)]
)
def test_corruption_from_dmsetup_status(tmp_path, monkeypatch, status: str, seen: bool):
    _dmsetup(tmp_path, monkeypatch, status)
    assert bootmode.corrupted() is seen
    assert not bootmode.corrupted("another-device")


def test_corruption_is_reported_once(tmp_path, monkeypatch, device, server):
    _dmsetup(tmp_path, monkeypatch, "0 1024 verity C")
    setup_device(device, server)
    (device.roots.proc / "cmdline").write_text(CMDLINES["verity"] + "\n")
    agent = make_agent(device)
    agent.cycle()
    agent.cycle()
    reports = [e for e in server.events if e["kind"] == EventKind.VERITY_CORRUPTION]
    assert len(reports) == 1
    assert "dmsetup status: C" in reports[0]["reason"]


def test_an_unverified_root_is_not_watched(tmp_path, monkeypatch, device, server):
    _dmsetup(tmp_path, monkeypatch, "0 1024 verity C")
    setup_device(device, server)
    make_agent(device).cycle()
    assert not [e for e in server.events if e["kind"] == EventKind.VERITY_CORRUPTION]


@pytest.mark.parametrize(("status", "committed"), [("V", True), ("C", False)])
def test_a_trial_whose_root_failed_verity_falls_back_naming_it(
    tmp_path, monkeypatch, device, server, status: str, committed: bool
):
    """A block of the trial's root that did not verify fails the trial, whatever the other
    checks say (ADR 0071); the rollback names dm-verity. A root that verified commits."""
    _dmsetup(tmp_path, monkeypatch, f"0 1024 verity {status}")
    assert device.engine().start(Version("2.0.0"), server.tuf_url) is EngineResult.REBOOTING
    device.power_on()
    (device.roots.proc / "cmdline").write_text(CMDLINES["verity"] + "\n")
    assert device.booted() == (Slot.B, True)
    device.settle()
    state = device.engine().store.load()
    if committed:
        assert (device.committed(), state.state) == (Slot.B, UpdateState.COMMITTED)
        return
    assert (device.booted(), device.committed()) == ((Slot.A, False), Slot.A)
    assert state.state is UpdateState.ROLLED_BACK
    assert state.last_failure == (
        "health check failed: dm-verity root: a block of the root did not verify against its "
        "root hash (dmsetup status: C)"
    )
