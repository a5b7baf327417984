"""``fleet-updater`` commands on a simulated device, including a USB install."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time

import pytest
import yaml

from fleetcore.layout import Slot
from fleetcore.version import Version
from tests.updater.device import SimDevice
from updater.cli import main


def cli(device: SimDevice, *args: str) -> list[str]:
    r = device.roots
    return [
        "--root",
        str(r.root),
        "--data",
        str(r.data),
        "--boot-config",
        str(r.boot_config),
        "--device-tree",
        str(r.device_tree),
        "--sys",
        str(r.sys),
        "--proc",
        str(r.proc),
        *args,
    ]


def test_status_json(device, capsys):
    assert main(cli(device, "status", "--json")) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["state"] == "idle"
    assert info["running_version"] == "1.0.0"
    assert (info["booted_slot"], info["committed_slot"]) == ("a", "a")
    assert info["staged_version"] is None


def test_status_human(device, capsys):
    assert main(cli(device, "status")) == 0
    out = capsys.readouterr().out
    assert "running version" in out and "1.0.0" in out


def test_usb_install_then_commit(device, repo, tmp_path, capsys):
    usb = tmp_path / "usb"
    shutil.copytree(repo.path, usb)
    assert main(cli(device, "install", str(usb))) == 0
    assert "install of 2.0.0: rebooting" in capsys.readouterr().out
    device.power_on()
    assert device.booted() == (Slot.B, True)
    assert main(cli(device, "commit")) == 1  # the trial has not started: nothing to commit
    assert "nothing to commit" in capsys.readouterr().err


def test_usb_install_that_fails_exits_non_zero(device, repo, tmp_path, capsys):
    usb = tmp_path / "usb"
    shutil.copytree(repo.path, usb)
    for path in device.roots.slot_dir(Slot.A).iterdir():  # no seed: every chunk is read
        path.unlink()
    for chunk in (usb / "chunks").rglob("*.zst"):
        chunk.write_bytes(b"not the signed chunk")
    assert main(cli(device, "install", str(usb))) == 1
    assert "install of 2.0.0 failed:" in capsys.readouterr().err


def test_usb_install_refused_for_a_bad_signature_exits_1(device, repo, tmp_path, capsys):
    usb = tmp_path / "usb"
    shutil.copytree(repo.path, usb)
    timestamp = usb / "metadata" / "timestamp.json"
    metadata = json.loads(timestamp.read_text())
    sig = metadata["signatures"][0]["sig"]
    metadata["signatures"][0]["sig"] = ("0" if sig[0] != "0" else "1") + sig[1:]
    timestamp.write_text(json.dumps(metadata))
    assert main(cli(device, "install", str(usb))) == 1
    err = capsys.readouterr().err
    assert "install of 2.0.0 failed: metadata signatures do not meet the threshold" in err
    assert Slot.B not in device.engine().store.load().slot_versions  # nothing installed


@pytest.mark.parametrize("refusal", ["below-installed", "below-floor"])
def test_usb_install_refused_by_anti_rollback_exits_1(device, repo, tmp_path, capsys, refusal):
    if refusal == "below-installed":
        device.roots.image_version_file.write_text("3.0.0\n")
        message = "refusing version 2.0.0: it is lower than the installed 3.0.0"
    else:
        store = device.engine().store
        state = store.load()
        state.version_floor = Version("3.0.0")
        store.save(state)
        message = "refusing version 2.0.0: it is below this device's version floor 3.0.0"
    usb = tmp_path / "usb"
    shutil.copytree(repo.path, usb)
    assert main(cli(device, "install", str(usb))) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"fleet-updater: error: {message}"
    assert err[1].startswith("fleet-updater: hint:")


@pytest.mark.parametrize("version", ["2.x", "v2.0.0", "1.0.0\n", ""])
def test_install_of_a_malformed_version_is_a_usage_error(device, capsys, version):
    """Exit 2 like every other usage error (the VersionError got past argparse: exit 1)."""
    with pytest.raises(SystemExit) as exit_:
        main(cli(device, "install", "--version", version))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"install: error: argument --version: invalid version {version!r}" in err


def test_manual_rollback_of_a_trial(device, repo, tmp_path, capsys):
    usb = tmp_path / "usb"
    shutil.copytree(repo.path, usb)
    main(cli(device, "install", str(usb)))
    device.power_on()
    engine = device.engine()
    state = engine.store.load()
    assert state.state.value == "trial-reboot"
    assert main(cli(device, "rollback")) == 0
    assert "rolled back" in capsys.readouterr().out
    device.power_on()
    assert device.booted() == (Slot.A, False)
    device.settle()
    assert device.engine().store.load().last_failure == "rolled back by an operator"


def test_errors_are_one_line_with_a_hint(device, capsys):
    (device.roots.data_config).parent.mkdir(parents=True, exist_ok=True)
    device.roots.data_config.write_text("bogus: 1\n")
    assert main(cli(device, "status")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("fleet-updater: error: invalid updater configuration at bogus")
    assert err[1].startswith("fleet-updater: hint:")


@pytest.mark.parametrize("command", [["install"], ["install", "x", "--version", "2.0.0"]])
def test_install_needs_exactly_one_source(device, command):
    with pytest.raises(SystemExit):
        main(cli(device, *command))


def test_run_daemon_notifies_ready_and_enrolls(device, server, tmp_path):
    """``fleet-updater run`` as systemd starts it: READY=1 on the notify socket, then a poll."""
    device.roots.fleet_yaml.write_text(
        yaml.safe_dump(
            {"overlord_url": server.url, "enrollment_token": "enrol-me", "hostname": "cam-07"}
        )
    )
    notify = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify))
        sock.settimeout(30)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from updater.cli import main; raise SystemExit(main())",
                *cli(device, "run"),
            ],
            env={"NOTIFY_SOCKET": str(notify), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
        )
        try:
            assert sock.recv(100) == b"READY=1"
            deadline = time.monotonic() + 30
            while not server.heartbeats and time.monotonic() < deadline:
                time.sleep(0.1)
            assert server.devices == {"dev-1": "token-dev-1"}
            assert server.heartbeats[0].booted_slot is Slot.A
            assert sock.recv(100).startswith(b"STATUS=idle; next poll in")
        finally:
            proc.terminate()
            proc.wait(timeout=10)
