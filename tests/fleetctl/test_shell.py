"""``fleetctl shell`` as its own process on a real pseudo-terminal, against ``overlord serve``
and the device's agent thread running a real ``/bin/sh`` in its own PTY: the remote shell
runs what is typed at the local terminal's size, follows a SIGWINCH, fleetctl exits with the
shell's status and puts the local terminal back as it found it; ``fleetctl recording``
gives the asciicast whose input is what was typed. A device whose ``fleet.yaml`` forbids
shells refuses even though the Overlord allows it: one line, status 1, terminal restored."""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import pytest

from fleetcore.firstboot import RemoteAccess
from overlord.auth.models import KeyRole
from overlord.remote import asciicast
from tests.fleetctl.conftest import Fleet, one_line_error
from tests.fleetctl.test_logs import _device_serves, _sessions

SHELL = ["/bin/sh"]
SIZE = rb"(?<![\d-])\d+ \d+\r\n"  # what stty size prints (after a newline or the prompt)


@dataclass
class Terminal:
    """fleetctl on the slave side of a PTY; the test types and reads on the master."""

    proc: subprocess.Popen[bytes]
    master: int
    slave: int
    seen: bytearray = field(default_factory=bytearray)

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def until(self, pattern: bytes, what: str, count: int = 1) -> None:
        """Reads until ``pattern`` has been printed ``count`` times in all."""
        deadline = time.monotonic() + 60
        while len(re.findall(pattern, self.seen)) < count:
            assert time.monotonic() < deadline, f"no {what} in {bytes(self.seen)!r}"
            if select.select([self.master], [], [], 0.5)[0]:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:  # EIO: fleetctl exited and closed its side
                    pytest.fail(f"no {what} in {bytes(self.seen)!r}")

    def resize(self, cols: int, rows: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc.send_signal(signal.SIGWINCH)


@contextmanager
def _fleetctl_on_a_terminal(fleet: Fleet, *args: str) -> Iterator[Terminal]:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    command = [sys.executable, "-m", "fleetctl", "--url", fleet.url, "--token", fleet.admin]
    proc = subprocess.Popen(
        [*command, *args],
        env=fleet.env(),
        stdin=slave,
        stdout=slave,
        stderr=subprocess.PIPE,
    )
    try:
        yield Terminal(proc, master, slave)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
        os.close(master)
        os.close(slave)


def _allow_shells(fleet: Fleet, device_id: str) -> None:
    answer = httpx.put(
        f"{fleet.url}/api/v1/config/devices/{device_id}/FLEET_REMOTE_SHELL",
        json={"value": "1"},
        headers={"Authorization": f"Bearer {fleet.admin}"},
    )
    assert answer.status_code == 200, answer.text


def test_shell_runs_commands_at_the_terminals_size_and_exits_with_the_shells_status(
    fleet: Fleet,
):
    device_id = fleet.enroll("SHELLCTL1")
    _allow_shells(fleet, device_id)
    with _fleetctl_on_a_terminal(fleet, "shell", device_id) as term:
        cooked = termios.tcgetattr(term.slave)
        follower = _device_serves(fleet, device_id, RemoteAccess(shell=True), shell_command=SHELL)
        term.until(rb"[#$] $", "prompt")
        assert termios.tcgetattr(term.slave) != cooked  # raw while the shell runs
        typed = [b"stty size; echo from-$((40+2))\r", b"stty size\r", b"exit 5\r"]
        term.type(typed[0])
        term.until(rb"30 100\r\nfrom-42", "the size and the echo")
        term.resize(120, 40)
        # fleetctl sends the size at its next wake-up: ask until the shell has it.
        for _ in range(20):
            answers = len(re.findall(SIZE, term.seen))
            term.type(typed[1])
            term.until(SIZE, "stty's answer", answers + 1)
            if b"40 120" in term.seen:
                break
        term.until(rb"40 120", "the new size")
        term.type(typed[2])
        assert term.proc.wait(timeout=60) == 5
        assert termios.tcgetattr(term.slave) == cooked
        assert term.proc.stderr is not None
        assert b"(recorded): waiting for" in term.proc.stderr.read()
    for _ in range(300):
        if not follower.serving:
            break
        time.sleep(0.1)
    (ended,) = _sessions(fleet, device_id)
    assert ended["end_detail"] == "the shell exited with status 5"

    cast = fleet.ok("recording", str(ended["id"]))
    _header, events = asciicast.load(cast)
    inputs = "".join(data for _at, code, data in events if code == "i")
    asks = inputs.count(typed[1].decode())
    assert inputs == (typed[0] + typed[1] * asks + typed[2]).decode()
    printed = "".join(data for _at, code, data in events if code == "o")
    assert "from-42" in printed and "40 120" in printed
    assert [data for _at, code, data in events if code == "r"][-1] == "120x40"


def test_piped_input_given_before_the_device_joins_reaches_its_shell(fleet: Fleet):
    """Without a terminal, stdin may be complete long before the device joins (the QEMU tier
    found it lost there, the session ending idle): fleetctl holds it until the shell's first
    output, then sends it and its end."""
    device_id = fleet.enroll("SHELLCTL4")
    _allow_shells(fleet, device_id)
    command = [sys.executable, "-m", "fleetctl", "--url", fleet.url, "--token", fleet.admin]
    proc = subprocess.Popen(
        [*command, "shell", device_id],
        env=fleet.env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(b"echo piped-$((6*7)); exit 4\n")
        proc.stdin.close()
        waiting = proc.stderr.readline() if proc.stderr is not None else b""
        assert b"waiting for" in waiting  # the session is open, the device not there yet
        # Kept referenced: a follower that is collected closes its socket mid-session.
        follower = _device_serves(fleet, device_id, RemoteAccess(shell=True), shell_command=SHELL)
        assert proc.wait(timeout=60) == 4, proc.stderr.read() if proc.stderr else b""
        assert follower is not None
        assert proc.stdout is not None
        assert b"piped-42" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_shell_fails_with_the_devices_veto_and_restores_the_terminal(fleet: Fleet):
    device_id = fleet.enroll("SHELLCTL2")
    _allow_shells(fleet, device_id)
    with _fleetctl_on_a_terminal(fleet, "shell", device_id) as term:
        cooked = termios.tcgetattr(term.slave)
        _device_serves(fleet, device_id, RemoteAccess(), shell_command=SHELL)
        assert term.proc.wait(timeout=60) == 1
        assert termios.tcgetattr(term.slave) == cooked
        assert term.proc.stderr is not None
        lines = term.proc.stderr.read().decode().splitlines()
    assert lines[-1].startswith("fleetctl: error: the session ended: this device's fleet.yaml")
    assert "Traceback" not in "".join(lines)
    (ended,) = _sessions(fleet, device_id)
    assert ended["end_reason"] == "device"


def test_a_viewer_cannot_open_a_shell_nor_read_a_recording(fleet: Fleet):
    device_id = fleet.enroll("SHELLCTL3")
    _allow_shells(fleet, device_id)
    viewer = fleet.token(KeyRole.VIEWER)
    refused = fleet.run("shell", device_id, token=viewer)
    assert refused.returncode == 1
    assert "a shell session needs the admin role" in one_line_error(refused)
    assert _sessions(fleet, device_id) == []
    missing = fleet.run("recording", "x" * 22, token=viewer)
    assert missing.returncode == 1
    assert "admin" in one_line_error(missing)
