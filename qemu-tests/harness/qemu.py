"""One power-on of the virtual board: start QEMU, watch the serial console, end the boot.

QEMU runs with ``-no-reboot``, so a reboot the guest asks for ends the process and the harness
(the firmware) decides what boots next. The serial console is read line by line from QEMU's
stdout; the boot ends when QEMU exits, when the watchdog deadline passes without the healthy
marker, or when a power cut is due (at a console line, a time, or a condition the test polls).

QEMU is the one long-lived child that cannot go through ``fleetcore.run.run``: the harness
must read its console while it runs and kill it at a chosen moment.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO

from harness.errors import QemuError
from harness.firmware import BootFiles

READ_CHUNK = 65536
POLL_SECONDS = 0.2
WHEN_POLL_SECONDS = 2.0

# What the kernel prints (at emergency level, so even a quiet console shows it) on the way out.
REBOOT_LINE = "reboot: Restarting system"
POWEROFF_LINES = ("reboot: Power down", "reboot: System halted")


@dataclass(frozen=True)
class MachineSpec:
    """The virtual board: the Pi 4's CPU and a Pi-sized memory, under TCG."""

    qemu: str = "qemu-system-aarch64"
    machine: str = "virt"
    cpu: str = "cortex-a72"
    smp: int = 2
    memory_mib: int = 1024
    extra_args: tuple[str, ...] = ()
    """More QEMU arguments, for example a user-mode network reaching an Overlord on the host."""
    kernel_args: tuple[str, ...] = ()
    """Appended to the card's ``cmdline.txt``, as a Pi's firmware appends its own: what the
    board says about itself that QEMU cannot, e.g. ``fleet.data.cipher=adiantum`` for a Pi 4,
    whose Cortex-A72 lacks the AES instructions every arm64 CPU model of QEMU 7.2 has."""
    card_read_bps: int | None = None
    """Reads of the card limited to this many bytes/s (QEMU's drive throttling): the card's
    speed as the bound, as on a Pi, where the host's page cache would otherwise serve it."""


@dataclass(frozen=True)
class PowerCut:
    """Kill QEMU when ``marker`` appears on the console, ``after`` seconds into the boot, or
    as soon as ``when()`` returns True (polled every ``WHEN_POLL_SECONDS``; ``label`` says
    what it waits for). ``when`` is how a scenario ends a boot the moment the condition under
    test is observed outside the guest, for example on the Overlord."""

    marker: str | None = None
    after: float | None = None
    when: Callable[[], bool] | None = None
    label: str = ""

    def __post_init__(self) -> None:
        given = [self.marker is not None, self.after is not None, self.when is not None]
        if given.count(True) != 1:
            raise QemuError("a power cut needs exactly one of marker=, after= or when=")
        if self.when is not None and not self.label:
            raise QemuError("a power cut on a condition needs a label= saying what it waits for")

    def describe(self) -> str:
        if self.marker is not None:
            return f"at console marker {self.marker!r}"
        if self.after is not None:
            return f"after {self.after} s"
        return f"once {self.label}"


class End(StrEnum):
    """How one boot ended."""

    REBOOT = "guest rebooted"
    POWEROFF = "guest powered off"
    WATCHDOG = "watchdog reset: no healthy marker before the deadline"
    POWER_CUT = "power cut"
    CRASH = "QEMU exited without a guest reboot or power-off"
    STALLED = "healthy, then still running at the session deadline: stopped"
    UNBOOTABLE = "firmware found nothing to boot: reset"


@dataclass(frozen=True)
class RunResult:
    end: End
    seconds: float
    healthy_after: float | None
    detail: str


GUEST_SERVICE_ADDRESS = "10.0.2.100"
"""Where the guest reaches the forwarded host service (QEMU's user network is 10.0.2.0/24)."""


def loopback_service(
    host_port: int, *, guest_port: int = 80, forwards: Mapping[int, int] | None = None
) -> tuple[str, ...]:
    """QEMU arguments for a guest NIC that reaches only ``127.0.0.1:host_port`` on the host.

    The guest sees the service at ``GUEST_SERVICE_ADDRESS:guest_port``; ``restrict=on`` keeps
    every other packet inside QEMU, so nothing leaves the host. ``forwards`` maps host ports
    (bound on 127.0.0.1 only) to guest TCP ports, so a test can reach a service the guest
    runs; ``restrict`` does not affect these host-initiated connections.
    """
    relay = Path(__file__).with_name("relay.py")
    forward = f"tcp:{GUEST_SERVICE_ADDRESS}:{guest_port}-cmd:{sys.executable} {relay}"
    inbound = "".join(
        f",hostfwd=tcp:127.0.0.1:{host}-:{guest}" for host, guest in (forwards or {}).items()
    )
    return (
        "-netdev",
        f"user,id=net0,restrict=on{inbound},guestfwd={forward} 127.0.0.1 {host_port}",
        "-device",
        "virtio-net-pci,netdev=net0",
    )


def command(spec: MachineSpec, disk: Path, files: BootFiles) -> list[str]:
    """The QEMU command line for one boot of ``disk`` with the firmware's chosen files."""
    return [
        spec.qemu,
        "-M",
        spec.machine,
        "-cpu",
        spec.cpu,
        "-smp",
        str(spec.smp),
        "-m",
        str(spec.memory_mib),
        "-accel",
        "tcg,thread=multi",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
        "-kernel",
        str(files.kernel),
        "-initrd",
        str(files.initrd),
        "-append",
        " ".join((files.cmdline, *spec.kernel_args)),
        "-drive",
        f"if=none,id=card,file={disk},format=raw,cache=writeback,snapshot=off"
        + ("" if spec.card_read_bps is None else f",throttling.bps-read={spec.card_read_bps}"),
        "-device",
        "virtio-blk-pci,drive=card",
        *spec.extra_args,
    ]


class _Console:
    """Complete console lines from QEMU's stdout, copied to the log as they arrive."""

    def __init__(self, stream: IO[bytes], log: IO[bytes]) -> None:
        self.stream = stream
        self.log = log
        self.partial = b""
        self.closed = False
        self.last_line = ""
        self.selector = selectors.DefaultSelector()
        self.selector.register(stream, selectors.EVENT_READ)

    def read(self, timeout: float) -> list[str]:
        if self.closed or not self.selector.select(timeout):
            return []
        chunk = os.read(self.stream.fileno(), READ_CHUNK)
        self.log.write(chunk)
        self.log.flush()
        pending = self.partial + chunk
        if not chunk:
            self.closed = True
            pending += b"\n" if self.partial else b""
        *raw_lines, self.partial = pending.split(b"\n")
        lines = [line.decode(errors="replace").rstrip("\r") for line in raw_lines]
        self.last_line = next((line for line in reversed(lines) if line), self.last_line)
        return lines


def boot(
    spec: MachineSpec,
    disk: Path,
    files: BootFiles,
    *,
    log: IO[bytes],
    healthy_marker: str,
    watchdog_seconds: float,
    session_seconds: float,
    power_cut: PowerCut | None = None,
) -> RunResult:
    """Run QEMU until the guest ends this boot, the watchdog fires, or the power is cut."""
    argv = command(spec, disk, files)
    log.write(f"### {shlex.join(argv)}\n".encode())
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as err:
        raise QemuError(f"cannot start {spec.qemu}: {err}") from err
    assert proc.stdout is not None
    console = _Console(proc.stdout, log)
    started = time.monotonic()
    healthy_after: float | None = None
    seen_reboot = seen_poweroff = False
    next_when = started
    try:
        while True:
            elapsed = time.monotonic() - started
            for line in console.read(POLL_SECONDS):
                elapsed = time.monotonic() - started
                if healthy_after is None and healthy_marker in line:
                    healthy_after = elapsed
                seen_reboot = seen_reboot or REBOOT_LINE in line
                seen_poweroff = seen_poweroff or any(p in line for p in POWEROFF_LINES)
                if power_cut and power_cut.marker and power_cut.marker in line:
                    return _kill(proc, End.POWER_CUT, started, healthy_after, power_cut.describe())
            if power_cut and power_cut.after is not None and elapsed >= power_cut.after:
                return _kill(proc, End.POWER_CUT, started, healthy_after, power_cut.describe())
            if power_cut and power_cut.when is not None and time.monotonic() >= next_when:
                next_when = time.monotonic() + WHEN_POLL_SECONDS
                if power_cut.when():
                    return _kill(proc, End.POWER_CUT, started, healthy_after, power_cut.describe())
            if console.closed:
                code = proc.wait()
                if code != 0:
                    # The guest cannot make QEMU fail: a reset or power-off under -no-reboot
                    # exits 0, so this is QEMU refusing its arguments or the host failing it.
                    raise QemuError(f"{spec.qemu} exited {code}: {console.last_line}")
                end = End.REBOOT if seen_reboot else End.POWEROFF if seen_poweroff else End.CRASH
                return RunResult(end, time.monotonic() - started, healthy_after, f"exit {code}")
            if healthy_after is None and elapsed >= watchdog_seconds:
                detail = f"deadline {watchdog_seconds} s"
                return _kill(proc, End.WATCHDOG, started, healthy_after, detail)
            if elapsed >= session_seconds:
                detail = f"session deadline {session_seconds} s"
                return _kill(proc, End.STALLED, started, healthy_after, detail)
    finally:
        if proc.poll() is None:
            _terminate(proc)
        proc.stdout.close()


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL, never a clean shutdown: that is what a power cut or a reset does to the board."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _kill(
    proc: subprocess.Popen[bytes], end: End, started: float, healthy: float | None, detail: str
) -> RunResult:
    _terminate(proc)
    return RunResult(end, time.monotonic() - started, healthy, detail)
