"""Stage a bootloader update the way rpi-eeprom-update does, reboot, and verify it took.

Two methods, chosen per board (docs/boards.md, "Bootloader updates"):

- **recovery** (Pi 4 family; a Pi 5 without the A/B EEPROM): ``pieeprom.upd``,
  ``recovery.bin`` and, last, ``pieeprom.sig`` are written to the config partition (partition
  1, the FAT partition the boot ROM reads ``recovery.bin`` from, where ``autoboot.txt`` lives).
  At the next power-on the ROM runs ``recovery.bin``, which checks the image against the sig,
  writes and verifies the SPI flash, renames itself ``recovery.000`` and resets. The sig goes
  last because both recovery.bin and the bootloader's self-update ignore an image without it:
  a power cut while staging leaves nothing that applies.
- **ab** (a Pi 5 whose ``rpi-eeprom-ab spi-check`` passes and an image with a ``bootsys``):
  ``rpi-eeprom-ab update`` writes the inactive EEPROM partition, ``mark-partition-valid``
  records its SHA-256 and ``force-commit-opposite`` makes it the one booted next, as
  rpi-eeprom-update's ``runABUpdate`` does. The running partition is never written.

Either way the state is saved on /data before the first write (``pending``), the device
reboots, and after the reboot ``resume`` compares what the bootloader reports with the target:
the update took, or it did not and the old bootloader still runs (reported, never retried for
that build). It never downgrades, never installs a build that failed before, and never starts
while an OS update is under way (and the OS engine waits while this is pending): the two
kinds of update are serialised.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fleetcore import eeprom
from fleetcore.atomic import atomic_write, atomic_write_fat, remove_fat
from fleetcore.boards import Board
from fleetcore.bootloader import TrybootSupport, build_date
from fleetcore.errors import CommandError, FormatError
from fleetcore.release import Hardware
from fleetcore.run import run
from fleetcore.version import Version
from fleetcore.wire import IN_PROGRESS_STATES, BootloaderReport, EventKind, UpdateState
from updater.bootloader import probe
from updater.bootloader.keyguard import check_close_step
from updater.bootloader.pending import BootloaderState, BootloaderStore, Method, Pending
from updater.errors import BootloaderError
from updater.queue import EventQueue

log = logging.getLogger(__name__)

# Written in this order; the sig is the commit point (see above).
STAGED = ("pieeprom.upd", "recovery.bin", "pieeprom.sig")
# What an applied or abandoned update leaves on the config partition (recovery.bin renames
# itself RECOVERY.000 on FAT, which matches either case).
LEFTOVERS = (*STAGED, "recovery.000", "RECOVERY.000")
MAX_RECOVERY_BIN = 1024 * 1024
FLASH_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class BootloaderRelease:
    """The files of a bootloader release, as rpi-eeprom ships them, already TUF-verified."""

    family: Hardware
    image: bytes  # pieeprom-YYYY-MM-DD.bin
    sig: bytes  # its pieeprom.sig
    recovery: bytes  # recovery.bin of the same rpi-eeprom release


class BootloaderUpdater:
    def __init__(
        self,
        *,
        family: Hardware,
        board: Board,
        config_partition: Path,
        store: BootloaderStore,
        events: EventQueue,
        work_dir: Path,
        boot_id: Callable[[], str],
        reboot: Callable[[], None],
        os_state: Callable[[], UpdateState],
        read: Callable[[], probe.Bootloader] = probe.read,
        committed_boot_sig: Callable[[], bytes | None] = lambda: None,
    ) -> None:
        """``committed_boot_sig``: the committed slot's boot.sig (None: it has none), which a
        release turning signed boot on must be signed under (ADR 0084)."""
        self.family = family
        self.board = board
        self.config_partition = config_partition
        self.store = store
        self.events = events
        self.work_dir = work_dir
        self.boot_id = boot_id
        self.reboot = reboot
        self.os_state = os_state
        self._reader = read
        self._committed_boot_sig = committed_boot_sig
        self._read: probe.Bootloader | BootloaderError | None = None
        self._minimum_reported = False

    # -- reading -------------------------------------------------------------------------

    def running(self) -> probe.Bootloader:
        """The running bootloader, or why it cannot be read (once per agent start, and again
        after an update: the tools are not run at every heartbeat)."""
        if self._read is None:
            try:
                self._read = self._reader()
            except BootloaderError as err:
                self._read = err
        if isinstance(self._read, BootloaderError):
            raise self._read
        return self._read

    def report(self) -> BootloaderReport:
        """The heartbeat's ``bootloader``; a bootloader below the minimum is also an event,
        once per agent start."""
        pending = self.store.load().pending
        target = pending.target if pending else None
        try:
            found = self.running()
        except BootloaderError as err:
            return BootloaderReport(pending=target, error=str(err)[:300])
        report = probe.verdict(self.family, found, pending=target)
        if report.tryboot_ab is TrybootSupport.BELOW_MINIMUM and not self._minimum_reported:
            self._minimum_reported = True
            assert report.version is not None and report.minimum is not None
            self.events.put(
                EventKind.BOOTLOADER_BELOW_MINIMUM,
                reason=(
                    f"bootloader {build_date(report.version)} is older than "
                    f"{build_date(report.minimum)}, the minimum for tryboot A/B"
                    + (" under secure boot" if report.secure_boot else "")
                ),
                data={"bootloader": report.version, "minimum": report.minimum},
            )
        return report

    # -- installing ---------------------------------------------------------------------

    def install(self, release: BootloaderRelease, *, version: Version | None = None) -> bool:
        """Stage ``release`` and reboot to apply it; False when it already runs.

        :class:`BootloaderError` (and an event) when it is refused: another update under
        way, the wrong board, a sig that does not match, older than what runs, failed before.
        """
        try:
            return self._install(release)
        except BootloaderError as err:
            self.refused(err, version)
            raise

    def refused(self, err: BootloaderError, version: Version | None = None) -> None:
        """Report a refused bootloader release (``version``, when known, is the release's:
        its rollout counts the failure) to the Overlord: one event, one line."""
        log.error("bootloader update refused: %s", err)
        self.events.put(EventKind.BOOTLOADER_FAILED, version=version, reason=str(err))

    def _install(self, release: BootloaderRelease) -> bool:
        state = self.store.load()
        if state.pending is not None:
            raise BootloaderError(
                f"a bootloader update to {build_date(state.pending.target)} is already staged"
            )
        os_state = self.os_state()
        if os_state in IN_PROGRESS_STATES:
            raise BootloaderError(
                f"an OS update is under way ({os_state.value}); the bootloader update waits "
                "until it ends"
            )
        if release.family is not self.family:
            raise BootloaderError(
                f"the bootloader release is for {release.family.value}, this is {self.family.value}"
            )
        new = self._check(release)
        check_close_step(release.image, self._committed_boot_sig)
        if self.board is Board.CM4:
            raise BootloaderError(
                "a CM4's boot ROM does not load recovery.bin from eMMC and its bootloader does "
                "not self-update from it; update a CM4's EEPROM with rpiboot (usbboot)",
                hint="docs/boards.md, Bootloader updates",
            )
        running = self.running().version.timestamp
        if new.timestamp < running:
            raise BootloaderError(
                f"bootloader {build_date(new.timestamp)} is older than the installed "
                f"{build_date(running)}; bootloaders are never downgraded"
            )
        if new.timestamp == running:
            self.events.put(
                EventKind.BOOTLOADER_UPDATED,
                version=eeprom.release_version(running),
                message=f"{build_date(running)} already runs",
                data={"bootloader": running},
            )
            return False
        if new.timestamp in state.failed:
            raise BootloaderError(
                f"bootloader {build_date(new.timestamp)} did not take on this device before"
            )
        method = Method.AB if self._ab_available(new) else Method.RECOVERY
        state.pending = Pending(
            target=new.timestamp, previous=running, method=method, boot_id=self.boot_id()
        )
        self.store.save(state)
        try:
            if method is Method.AB:
                self._flash_ab(new)
            else:
                self._stage_recovery(release)
        except (OSError, CommandError) as err:
            self._clean()
            state.pending = None
            self.store.save(state)
            raise BootloaderError(f"staging bootloader {build_date(new.timestamp)}: {err}") from err
        self.events.put(
            EventKind.BOOTLOADER_STAGED,
            version=eeprom.release_version(new.timestamp),
            message=f"{method.value}: {build_date(running)} -> {build_date(new.timestamp)}",
            data={"bootloader": new.timestamp},
        )
        log.info("bootloader %s staged (%s); rebooting", build_date(new.timestamp), method.value)
        self.reboot()
        return True

    def blocks_os_updates(self) -> bool:
        """True while the running bootloader is below the tryboot A/B minimum: an OS update
        would rely on a tryboot the bootloader does not do right, so it waits for a
        bootloader update (reported once as ``bootloader-below-minimum``)."""
        return self.report().tryboot_ab is TrybootSupport.BELOW_MINIMUM

    def _check(self, release: BootloaderRelease) -> eeprom.EepromImage:
        try:
            new = eeprom.load_image(release.image, self.family)
            eeprom.check_pair(new, eeprom.load_sig(release.sig))
        except FormatError as err:
            raise BootloaderError(str(err)) from err
        if not 0 < len(release.recovery) <= MAX_RECOVERY_BIN:
            raise BootloaderError(f"recovery.bin is empty or larger than {MAX_RECOVERY_BIN} bytes")
        return new

    def _ab_available(self, new: eeprom.EepromImage) -> bool:
        if self.family is not Hardware.PI5 or not new.ab_capable:
            return False
        try:
            return run(["rpi-eeprom-ab", "spi-check"], check=False, timeout=30).returncode == 0
        except CommandError:
            return False

    def _stage_recovery(self, release: BootloaderRelease) -> None:
        for name, data in zip(STAGED, (release.image, release.recovery, release.sig), strict=True):
            atomic_write_fat(self.config_partition / name, data)

    def _flash_ab(self, new: eeprom.EepromImage) -> None:
        partition = new.ab_partition()
        staged = self.work_dir / "bootloader-ab.bin"
        atomic_write(staged, partition)
        try:
            run(["rpi-eeprom-ab", "update", str(staged)], timeout=FLASH_TIMEOUT_S)
            digest = hashlib.sha256(partition).hexdigest()
            run(["rpi-eeprom-ab", "mark-partition-valid", digest], timeout=FLASH_TIMEOUT_S)
            run(["rpi-eeprom-ab", "force-commit-opposite"], timeout=FLASH_TIMEOUT_S)
        finally:
            staged.unlink(missing_ok=True)

    # -- after the reboot -------------------------------------------------------------------

    def pending(self) -> Pending | None:
        return self.store.load().pending

    def resume(self) -> bool:
        """Verify a staged update once the device has rebooted; True while a reboot is due."""
        state = self.store.load()
        pending = state.pending
        if pending is None:
            return False
        if self.boot_id() == pending.boot_id:
            log.info("bootloader %s is staged; rebooting to apply it", build_date(pending.target))
            self.reboot()
            return True
        self._read = None
        try:
            running: int | None = self.running().version.timestamp
            why = ""
        except BootloaderError as err:
            running, why = None, str(err)
        self._clean()
        self._finish(state, pending, running, why)
        return False

    def _finish(
        self, state: BootloaderState, pending: Pending, running: int | None, why: str
    ) -> None:
        state.pending = None
        if running == pending.target:
            self.store.save(state)
            log.info("bootloader %s runs", build_date(running))
            self.events.put(
                EventKind.BOOTLOADER_UPDATED,
                version=eeprom.release_version(running),
                message=f"{build_date(pending.previous)} -> {build_date(running)}",
                data={"bootloader": running},
            )
            return
        state.failed = [*state.failed, pending.target][-64:]
        self.store.save(state)
        now = build_date(running) if running is not None else f"unreadable ({why})"
        reason = (
            f"bootloader {build_date(pending.target)} did not take: after the reboot the "
            f"bootloader is {now}; the previous bootloader still runs"
        )
        log.error("%s", reason)
        self.events.put(
            EventKind.BOOTLOADER_FAILED,
            version=eeprom.release_version(pending.target),
            reason=reason,
            data={"bootloader": pending.target},
        )

    def _clean(self) -> None:
        """Remove every staged or applied update file (rpi-eeprom-update's service does the
        same at startup), so no ROM or bootloader applies it again."""
        for name in LEFTOVERS:
            remove_fat(self.config_partition / name)
