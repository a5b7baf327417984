"""The boot mode the heartbeat reports, and dm-verity corruption of the running root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fleetcore.wire import BootMode, EventKind
from tests.updater.agents import make_agent, setup_device
from updater import bootmode
from updater.paths import Roots

VERITY_ARG = "fleet.verity=1:sha256:4096:7681:31461376:" + "5a" * 32 + ":" + "0f" * 32
CMDLINES = {
    "plain": "console=ttyAMA0 root=PARTLABEL=system_a rootfstype=squashfs ro rootwait",
    "verity": f"console=ttyAMA0 root=PARTLABEL=system_a ro rootwait {VERITY_ARG}",
    "malformed": "console=ttyAMA0 root=PARTLABEL=system_a fleet.verity=1:sha256:4096:12",
}


def _roots(tmp: Path, cmdline: str, signed: bytes | None) -> Roots:
    roots = Roots(proc=tmp / "proc", device_tree=tmp / "device-tree")
    roots.proc.mkdir()
    (roots.proc / "cmdline").write_text(cmdline + "\n")
    if signed is not None:
        (roots.device_tree / "chosen/bootloader").mkdir(parents=True)
        (roots.device_tree / "chosen/bootloader/signed").write_bytes(signed)
    return roots


@pytest.mark.parametrize(
    ("cmdline", "signed", "mode"),
    [
        ("plain", None, BootMode.UNSIGNED),
        ("verity", None, BootMode.VERITY),
        ("verity", b"\x00\x00\x00\x00", BootMode.VERITY),
        ("verity", b"\x00\x00\x00\x01", BootMode.SECURE_VERITY),
        ("verity", b"\x00\x00\x00\x09", BootMode.SECURE_VERITY),
        ("verity", b"\x01", BootMode.VERITY),  # truncated: not trusted
        ("plain", b"\x00\x00\x00\x01", BootMode.UNSIGNED),  # signed boot, root not pinned
        ("malformed", None, BootMode.UNSIGNED),
    ],
)
def test_boot_mode(tmp_path: Path, cmdline: str, signed: bytes | None, mode: BootMode):
    assert bootmode.boot_mode(_roots(tmp_path, CMDLINES[cmdline], signed)) is mode


def test_heartbeat_carries_the_boot_mode(device, server):
    setup_device(device, server)
    (device.roots.proc / "cmdline").write_text(CMDLINES["verity"] + "\n")
    make_agent(device).cycle()
    assert server.heartbeats[-1].boot_mode is BootMode.VERITY


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
