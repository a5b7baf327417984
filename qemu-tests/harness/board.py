"""The simulated Raspberry Pi: firmware decisions and QEMU boots, in a loop, all recorded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cryptography.hazmat.primitives.asymmetric import rsa

from fleetcore import bootsig
from harness import qemu, secureboot
from harness.disk import fat_volume
from harness.eeprom import SimulatedEeprom
from harness.errors import DiskError, HarnessError
from harness.firmware import CONFIG_LABEL, BootFiles, ConfigPartition, Decision, load_boot_files
from harness.qemu import End, MachineSpec, PowerCut


@dataclass(frozen=True)
class BootRecord:
    """One boot: what the firmware chose and why, and how the boot ended."""

    index: int
    decision: Decision
    label: str
    """PARTLABEL of the booted partition ("" when the partition does not exist)."""
    flag_dropped: bool
    """A tryboot flag was left over from a boot that did not end in a guest reboot: lost."""
    end: End
    healthy_after: float | None
    seconds: float
    detail: str
    console_start: int
    console_end: int
    eeprom: str = ""
    """What the boot ROM's recovery.bin did at this power-on ("" when nothing was staged)."""

    @property
    def partition(self) -> int:
        return self.decision.partition

    @property
    def tryboot(self) -> bool:
        return self.decision.tryboot

    @property
    def healthy(self) -> bool:
        return self.healthy_after is not None

    def line(self) -> str:
        healthy = f"healthy at {self.healthy_after:.1f} s" if self.healthy_after else "not healthy"
        dropped = ", stale tryboot flag dropped" if self.flag_dropped else ""
        rom = f" [{self.eeprom}]" if self.eeprom else ""
        return (
            f"boot {self.index}{rom}: partition {self.partition} ({self.label or 'missing'}) "
            f"tryboot={self.tryboot} "
            f"({self.decision.reason}{': ' + self.decision.detail if self.decision.detail else ''}"
            f"{dropped}) -> {self.end.value} [{self.detail}], {healthy}, {self.seconds:.1f} s"
        )


@dataclass(frozen=True)
class Deadlines:
    watchdog: float = 120.0
    """Seconds from power-on to the healthy marker before the watchdog resets the board."""
    session: float = 600.0
    """Seconds any one boot may run at all; past it the harness stops the board."""


class SimulatedPi:
    """A board with one SD card (the disk image), booted again and again by the firmware."""

    def __init__(
        self,
        disk: Path,
        workdir: Path,
        *,
        healthy_marker: str,
        deadlines: Deadlines | None = None,
        spec: MachineSpec | None = None,
        customer_key: bytes | None = None,
        eeprom: SimulatedEeprom | None = None,
    ) -> None:
        """``customer_key``: the PEM RSA-2048 public key the board's bootloader holds for
        signed boot (the key OTP pins); None: a board without secure boot. ``eeprom``: the
        board's EEPROM bootloader, applied and reported at every power-on; None: the guest
        sees no bootloader (a virt machine). When the running EEPROM image has
        ``SIGNED_BOOT=1``, its embedded key is the one checked (``customer_key`` is the
        fallback), so flashing a bootloader release changes what boots next."""
        self.disk = disk
        self.customer_key = bootsig.load_public_key(customer_key) if customer_key else None
        self.eeprom = eeprom
        self.workdir = workdir
        self.healthy_marker = healthy_marker
        self.deadlines = deadlines or Deadlines()
        self.spec = spec or MachineSpec()
        self.records: list[BootRecord] = []
        self.console_log = workdir / "console.log"
        workdir.mkdir(parents=True, exist_ok=True)
        self.console_log.touch()
        self.config = ConfigPartition(fat_volume(disk, label=CONFIG_LABEL))
        # Power-on: whatever flag a previous life left behind is gone.
        self._flag_honoured = False

    def boot(self, *, power_cut: PowerCut | None = None) -> BootRecord:
        """Power on (or reset) the board once and run it until that boot ends."""
        rom = self.eeprom.power_on(self.config.volume) if self.eeprom else ""
        if self._flag_honoured:
            tryboot, dropped = self.config.take_tryboot_flag(), False
        else:
            tryboot, dropped = False, self.config.drop_tryboot_flag()
        decision = self.config.select(tryboot=tryboot)
        index = len(self.records) + 1
        key = self.boot_key
        label, files = self._boot_files(decision.partition, key)
        # Signed-boot mode: the slot booted only because its boot.sig verified.
        self.config.record(decision, signed=key is not None)
        with self.console_log.open("ab") as log:
            start = log.tell()
            log.write(f"\n### boot {index}: partition {decision.partition}, ".encode())
            log.write(f"tryboot={decision.tryboot} ({decision.reason})\n".encode())
            if rom:
                log.write(f"### boot ROM: {rom}\n".encode())
            result = self._run(files, log, power_cut)
            log.flush()
            end = log.tell()
        record = BootRecord(
            index=index,
            decision=decision,
            label=label,
            flag_dropped=dropped,
            end=result.end,
            healthy_after=result.healthy_after,
            seconds=result.seconds,
            detail=result.detail,
            console_start=start,
            console_end=end,
            eeprom=rom,
        )
        self.records.append(record)
        self._flag_honoured = record.end is End.REBOOT
        return record

    @property
    def boot_key(self) -> rsa.RSAPublicKey | None:
        """The key signed boot checks now: the running EEPROM's when it has signed boot on,
        else ``customer_key``."""
        running = self.eeprom.boot_key if self.eeprom else None
        return running if running is not None else self.customer_key

    def _boot_files(self, number: int, key: rsa.RSAPublicKey | None) -> tuple[str, BootFiles | str]:
        """The partition's label and its boot files, or why it cannot boot."""
        try:
            volume = fat_volume(self.disk, number=number)
        except DiskError as err:
            return "", str(err)
        dest = self.workdir / "boot-files"
        if key is not None or secureboot.wants_ramdisk(volume):
            ramdisk = secureboot.open_ramdisk(volume, dest, key)
            if isinstance(ramdisk, str):
                return volume.part.label, ramdisk
            return volume.part.label, load_boot_files(ramdisk, dest)
        return volume.part.label, load_boot_files(volume, dest)

    def _run(
        self, files: BootFiles | str, log: IO[bytes], power_cut: PowerCut | None
    ) -> qemu.RunResult:
        if isinstance(files, str):
            log.write(f"### firmware: {files}\n".encode())
            return qemu.RunResult(End.UNBOOTABLE, 0.0, None, files)
        return qemu.boot(
            self.spec,
            self.disk,
            files,
            log=log,
            healthy_marker=self.healthy_marker,
            watchdog_seconds=self.deadlines.watchdog,
            session_seconds=self.deadlines.session,
            power_cut=power_cut,
        )

    def boot_until(self, done: Callable[[BootRecord], bool], *, max_boots: int) -> BootRecord:
        """Boot repeatedly until ``done`` accepts a boot; fail after ``max_boots``."""
        for _ in range(max_boots):
            record = self.boot()
            if done(record):
                return record
        raise HarnessError(f"no acceptable boot in {max_boots} boots:\n{self.decisions()}")

    def console(self, record: BootRecord | None = None) -> str:
        """The serial console of one boot, or of every boot so far."""
        data = self.console_log.read_bytes()
        if record is not None:
            data = data[record.console_start : record.console_end]
        return data.decode(errors="replace")

    def live_console(self) -> str:
        """The serial console of the boot running now (for a ``PowerCut(when=...)``)."""
        start = self.records[-1].console_end if self.records else 0
        with self.console_log.open("rb") as log:
            log.seek(start)
            return log.read().decode(errors="replace")

    def decisions(self) -> str:
        return "\n".join(r.line() for r in self.records) or "no boots yet"
