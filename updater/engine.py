"""The update state machine (Mender style): each state is saved before its side effect.

    idle -> downloading -> installing -> verifying -> trial-reboot ~reboot~> trial
         -> committing -> committed
    any install step -> failed               (the active slot was never touched)
    trial-reboot / trial / committing -> rolled-back ~reboot into the old slot~> reported

:meth:`Engine.resume` is called at every start of the agent and continues whatever the saved
state says, looking at the firmware's boot state and the boot id to tell "the agent
restarted" from "the device rebooted". A power cut anywhere leaves the device on a committed
slot: the tryboot flag is volatile and autoboot.txt names the committed slot until commit.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from enum import StrEnum

from fleetcore import redact
from fleetcore.bootloader import MINIMUMS
from fleetcore.errors import FleetError
from fleetcore.layout import Slot
from fleetcore.release import Hardware, ImageName
from fleetcore.version import Version
from fleetcore.wire import IN_PROGRESS_STATES, EventKind, UpdateState
from signing.errors import DownloadError, VerificationError
from signing.rollback import check_upgrade, raise_floor
from updater import autoboot, board, bootimage, bootkeys
from updater.attempts import InstallAttempts
from updater.bootloader import probe
from updater.bootloader.pending import BootloaderStore
from updater.bootloader.update import BootloaderUpdater
from updater.config import UpdaterConfig
from updater.disk import BootDisk, find_boot_disk
from updater.errors import (
    BoardRefused,
    DiskError,
    FirmwareError,
    InstallError,
    NoSpace,
    TransferError,
    UpdateStateError,
    VersionRejected,
)
from updater.firmware import BootState, Firmware
from updater.health import HealthChecker
from updater.install import ProgressFile, Seed, SlotWriter, verify_slot
from updater.paths import Roots
from updater.queue import EventQueue
from updater.release import (
    fetch_release,
    keep_as_seed,
    load_seed_indexes,
    load_stored,
    load_stored_deltas,
)
from updater.slots import other
from updater.sources import ReleaseSource, open_source
from updater.space import RESERVE_BYTES, Reserve, free_bytes
from updater.staged import Staged, StagedStore, manifest_digest
from updater.state import StateStore, UpdaterState

log = logging.getLogger(__name__)

_BEFORE_REBOOT = frozenset({UpdateState.DOWNLOADING, UpdateState.INSTALLING, UpdateState.VERIFYING})
# The states a pre-stage hint may start from: nothing in progress or to report. Not FAILED: the
# failure stays what the device reports until an install replaces it (then it installs as
# before, on admission).
_STAGEABLE = frozenset({UpdateState.IDLE, UpdateState.COMMITTED})
PROGRESS_FILE = "progress.json"


class EngineResult(StrEnum):
    IDLE = "idle"  # nothing in progress
    WAITING = "waiting"  # in progress, blocked on the network: resume later
    REBOOTING = "rebooting"  # a reboot was requested; the agent waits to be stopped


class Engine:
    def __init__(
        self,
        *,
        roots: Roots,
        config: UpdaterConfig,
        firmware: Firmware,
        events: EventQueue,
        health: HealthChecker,
        store: StateStore | None = None,
        reserve: Reserve | None = None,
        tick: Callable[[], None] = lambda: None,
    ) -> None:
        self.roots = roots
        self.config = config
        self.firmware = firmware
        self.events = events
        self.health = health
        self.reserve = reserve or Reserve(roots.reserve_file)
        self.store = store or StateStore(roots.state_file, reserve=self.reserve)
        self.attempts = InstallAttempts(
            roots.fleet / "install-attempts.json",
            limit=config.max_install_attempts,
            work_dir=roots.install_dir,
            reserve=self.reserve,
        )
        self._space_reported: Version | None = None
        self.staged = StagedStore(roots.staged_file)
        self.tick = tick
        # What the firmware says this board is, and the release family it installs (or why
        # it installs none: a board without tryboot A/B, or one updater.yaml misnames).
        self.board = board.detect(roots.device_tree, roots.proc)
        self._refusal: BoardRefused | None = None
        try:
            self._hardware: Hardware | None = board.resolve_hardware(self.board, config.hardware)
        except BoardRefused as err:
            self._hardware, self._refusal = None, err
            log.error("%s", err)
        self._disk: BootDisk | None = None
        self.last_stats: dict[str, int] = {}
        # The EEPROM bootloader of a Pi 4 or Pi 5 family board (None where no Raspberry Pi
        # firmware is seen, even with hardware: pi4, unless the simulated firmware plays an
        # EEPROM: the QEMU harness's SimulatedEeprom).
        self.bootloader: BootloaderUpdater | None = None
        simulated = firmware.simulated_eeprom()
        if self._hardware in MINIMUMS and (self.board.is_raspberry_pi or simulated is not None):
            self.bootloader = BootloaderUpdater(
                family=self._hardware,
                board=self.board.board,
                config_partition=roots.boot_config,
                store=BootloaderStore(roots.bootloader_file),
                events=events,
                work_dir=roots.fleet,
                boot_id=self.boot_id,
                reboot=firmware.reboot,
                os_state=lambda: self.store.load().state,
                read=simulated or probe.read,
                committed_boot_sig=lambda: bootimage.boot_sig(self.disk, self.committed_slot()),
            )

    # -- facts about the running device -------------------------------------------------

    @property
    def hardware(self) -> Hardware:
        """The release family this device installs; :class:`BoardRefused` on a board that
        cannot run A/B updates (the agent then neither enrols nor installs)."""
        if self._hardware is None:
            assert self._refusal is not None
            raise BoardRefused(str(self._refusal), hint=self._refusal.hint)
        return self._hardware

    @property
    def board_refusal(self) -> BoardRefused | None:
        return self._refusal

    @property
    def disk(self) -> BootDisk:
        if self._disk is None:
            self._disk = BootDisk.open(self.config.disk or find_boot_disk(self.roots))
        return self._disk

    def boot_state(self) -> BootState:
        return self.firmware.boot_state()

    def boot_id(self) -> str:
        try:
            return self.roots.boot_id_file.read_text().strip()
        except OSError as err:
            raise FirmwareError(f"cannot read the boot id {self.roots.boot_id_file}") from err

    def committed_slot(self) -> Slot:
        return autoboot.read(self.roots.autoboot).committed

    def running_version(self, state: UpdaterState | None = None) -> Version:
        state = state or self.store.load()
        known = state.slot_versions.get(self.boot_state().slot)
        return known if known is not None else self._image_version()

    def _image_version(self) -> Version:
        """The version the running image says it is (``/etc/metrica-fleet/version``)."""
        try:
            return Version(self.roots.image_version_file.read_text().strip())
        except OSError as err:
            raise UpdateStateError(
                f"cannot tell the running version: {self.roots.image_version_file} unreadable"
            ) from err

    def load(self) -> UpdaterState:
        state = self.store.load()
        booted = self.boot_state()
        if booted.slot not in state.slot_versions and not booted.tryboot:
            state.slot_versions[booted.slot] = self.running_version(state)
            self.store.save(state)
        return state

    # -- entry points ----------------------------------------------------------------------

    def start(self, version: Version, source: str) -> EngineResult:
        """Begin installing ``version`` from ``source`` unless it is done or under way."""
        _ = self.hardware  # a refused board installs nothing, and says why
        staged = BootloaderStore(self.roots.bootloader_file).load().pending
        if staged is not None:  # the two kinds of update are serialised (updater.bootloader)
            log.info("the OS update to %s waits for the staged bootloader update", version)
            return EngineResult.WAITING
        state = self.load()
        if state.state is UpdateState.ROLLED_BACK:  # report it (or finish it) first
            outcome = self.resume()
            if outcome is not EngineResult.IDLE:
                return outcome
            state = self.load()
        if state.state in IN_PROGRESS_STATES:
            if state.staging_from is not None and state.target_version == version:
                log.info("admitted while staging %s: the staging becomes the install", version)
                state.staging_from = None
                self.store.save(state)
                self.events.put(EventKind.UPDATE_AVAILABLE, version=version)
                if state.state is not UpdateState.DOWNLOADING:  # its start was not reported
                    self.events.put(EventKind.INSTALL_STARTED, version=version)
                return self.resume()
            if state.target_version == version or state.state not in _BEFORE_REBOOT:
                return self.resume()
            log.info("abandoning the install of %s for %s", state.target_version, version)
            state.staging_from = None
        booted = self.boot_state()
        running = self.running_version(state)
        if version == running and self.committed_slot() == booted.slot:
            return EngineResult.IDLE
        if state.is_bad(version):
            raise VersionRejected(f"release {version} is marked bad on this device")
        check_upgrade(version, installed=running, floor=state.version_floor)
        target = other(booted.slot)
        state.target_version, state.target_slot, state.source = version, target, source
        state.last_failure, state.rollback_unreported = None, False
        state.from_staged, state.restaged = self._is_staged(version, target), None
        stored = self.roots.install_dir / "manifest.json"
        if state.from_staged:
            log.info("admitted: %s is staged in slot %s; checking it first", version, target)
            state.state = UpdateState.VERIFYING
        elif state.slot_versions.get(target) == version and stored.exists():
            state.state = UpdateState.VERIFYING
        else:
            self.staged.clear()  # whatever was staged there is overwritten
            state.slot_versions.pop(target, None)
            state.state = UpdateState.DOWNLOADING
        self.store.save(state)
        self.events.put(EventKind.UPDATE_AVAILABLE, version=version, message=f"slot {target}")
        return self.resume()

    def stage(self, version: Version, source: str) -> EngineResult:
        """Install ``version`` into the inactive slot and stop before the trial (ADR 0082).

        The install pipeline runs as for an install (TUF, download, write, verify) without
        install events; once the slot verified, :class:`Staged` is recorded and the state
        returns to what it was. Nothing reboots. A hint for a version not newer than the
        running one, marked bad, already staged, or while anything else is in progress is
        ignored; a staging in progress for another version is abandoned for this one.
        """
        _ = self.hardware
        if BootloaderStore(self.roots.bootloader_file).load().pending is not None:
            return EngineResult.IDLE
        state = self.load()
        if state.state in IN_PROGRESS_STATES:
            if state.staging_from is None or state.target_version == version:
                return EngineResult.WAITING  # an install, or this staging, goes on by resume()
            log.info("abandoning the staging of %s for %s", state.target_version, version)
            prior = state.staging_from
        elif state.state in _STAGEABLE:
            prior = state.state
        else:
            return EngineResult.IDLE
        running = self.running_version(state)
        if version <= running or state.is_bad(version) or self.staged_version() == version:
            return EngineResult.IDLE
        check_upgrade(version, installed=running, floor=state.version_floor)
        target = other(self.boot_state().slot)
        self.staged.clear()
        state.slot_versions.pop(target, None)
        state.target_version, state.target_slot, state.source = version, target, source
        state.staging_from, state.from_staged, state.restaged = prior, False, None
        state.state = UpdateState.DOWNLOADING
        self.store.save(state)
        log.info("staging %s into slot %s before its admission", version, target)
        return self.resume()

    def staged_version(self) -> Version | None:
        """The release waiting in the inactive slot for admission, if any."""
        staged = self.staged.load()
        return staged.version if staged is not None else None

    def _is_staged(self, version: Version, target: Slot) -> bool:
        staged = self.staged.load()
        return (
            staged is not None
            and (staged.version, staged.slot) == (version, target)
            and staged.manifest_sha256 == manifest_digest(self.roots.install_dir)
        )

    def resume(self) -> EngineResult:
        """Continue from the saved state until the update needs a reboot, waits or ends."""
        while True:
            state = self.load()
            step = self._steps().get(state.state)
            if step is None:
                return EngineResult.IDLE
            guarded = state.state in _BEFORE_REBOOT
            if guarded and not self.attempts.begin(state):
                self._fail(state, self.attempts.give_up_reason(state))
                return EngineResult.IDLE
            try:
                outcome = step(state)
            except (TransferError, DownloadError) as err:
                log.warning("update of %s waits for the network: %s", state.target_version, err)
                self.attempts.end(state)
                return EngineResult.WAITING
            except NoSpace as err:
                self.attempts.end(state)
                self._waits_for_space(state, err)
                return EngineResult.WAITING
            except (InstallError, VerificationError, FirmwareError, DiskError) as err:
                if state.state not in _BEFORE_REBOOT:
                    raise
                self.attempts.clear()
                self._fail(state, str(err))
                return EngineResult.IDLE
            except FleetError:
                raise
            except Exception as err:
                # Not an expected failure (out of memory, a parser's recursion, ENOSPC): the
                # attempt stays counted, as it does when the process dies mid-step, and the
                # install is given up after max_install_attempts of them.
                if not guarded:
                    raise
                self.attempts.failed(state, f"{type(err).__name__}: {err}")
                log.error(
                    "update of %s hit %s: %s",
                    state.target_version,
                    type(err).__name__,
                    redact.SECRETS.mask(str(err))[:200],
                )
                return EngineResult.WAITING
            if guarded:
                self.attempts.end(state)
            if outcome is not None:
                return outcome

    def _steps(self) -> dict[UpdateState, Callable[[UpdaterState], EngineResult | None]]:
        return {
            UpdateState.DOWNLOADING: self._download,
            UpdateState.INSTALLING: self._install,
            UpdateState.VERIFYING: self._verify,
            UpdateState.TRIAL_REBOOT: self._trial_reboot,
            UpdateState.TRIAL: self._trial,
            UpdateState.COMMITTING: self._committing,
            UpdateState.ROLLED_BACK: self._rolled_back,
        }

    # -- install -----------------------------------------------------------------------------

    def _download(self, state: UpdaterState) -> None:
        assert state.target_version is not None and state.source is not None
        self._check_space()
        source = self._open(state.source)
        try:
            release = fetch_release(
                source.reader,
                state.target_version,
                self.roots.install_dir,
                hardware=self.hardware,
                installed=self.running_version(state),
                floor=state.version_floor,
                bad=state.bad_versions,
            )
        finally:
            source.close()
        shutil.rmtree(self.roots.slot_dir(self._target(state)), ignore_errors=True)
        state.target_floor = release.floor
        state.state = UpdateState.INSTALLING
        self.store.save(state)
        if state.staging_from is None:
            version, message = state.target_version, state.restaged or ""
            self.events.put(EventKind.INSTALL_STARTED, version=version, message=message)

    def _check_space(self) -> None:
        """Refuse to stage anything unless /data keeps its margin and the reserve beyond it:
        a staged install only grows, and the state and queue must still fit afterwards."""
        floor = self.config.transfer.min_free_data_bytes + RESERVE_BYTES
        free = free_bytes(self.roots.data)
        if free < floor:
            raise NoSpace(
                f"/data has {free} bytes free, below the {floor} needed to stage an install",
                hint="free space on /data (roles' volumes, images and logs live there)",
            )

    def _waits_for_space(self, state: UpdaterState, err: NoSpace) -> None:
        """Log every time, report once per version: the install goes on once space is back.

        Reported as an ``agent-error``, not ``install-failed``: the release is not at fault
        and must not count against its rollout.
        """
        log.warning("update of %s waits for space: %s", state.target_version, err)
        if self._space_reported == state.target_version:
            return
        self._space_reported = state.target_version
        self.events.put(
            EventKind.AGENT_ERROR, version=state.target_version, reason=f"install waits: {err}"
        )

    def _target(self, state: UpdaterState) -> Slot:
        assert state.target_slot is not None
        if state.target_slot == self.boot_state().slot:
            raise InstallError(f"slot {state.target_slot} is the running slot; not installing")
        return state.target_slot

    def _open(self, source: str) -> ReleaseSource:
        return open_source(
            source,
            roots=self.roots,
            trust_root=self.config.trust_root,
            transfer=self.config.transfer,
            proxies=self.config.proxy_rules(),
        )

    def _install(self, state: UpdaterState) -> None:
        assert state.target_version is not None and state.source is not None
        target, active = self._target(state), self.boot_state().slot
        manifest, indexes = load_stored(self.roots.install_dir, state.target_version)
        seed_indexes = load_seed_indexes(self.roots.slot_dir(active))
        source = self._open(state.source)
        seed = Seed(self.disk, active, seed_indexes) if seed_indexes else None
        reported: dict[ImageName, int] = {}

        def progress(image: ImageName, done: int, total: int) -> None:
            self.tick()
            tenth = done * 10 // max(total, 1)
            if tenth > reported.get(image, -1) and state.staging_from is None:
                reported[image] = tenth
                self.events.put(
                    EventKind.INSTALL_PROGRESS,
                    version=state.target_version,
                    data={"image": image.value, "bytes": done, "total": total},
                )

        writer = SlotWriter(
            disk=self.disk,
            roots=self.roots,
            active=active,
            target=target,
            source=source.chunks,
            seed=seed,
            config=self.config.transfer,
            progress=ProgressFile(self.roots.install_dir / PROGRESS_FILE),
            deltas=load_stored_deltas(self.roots.install_dir),
            on_progress=progress,
            tick=self.tick,
            patches={
                image: manifest.written(image, "b" if target is Slot.B else "a")[1]
                for image in ImageName
            },
        )
        try:
            writer.check_space(manifest, data=self.roots.data)
            writer.install(state.target_version, indexes)
        finally:
            source.close()
            if seed is not None:
                seed.close()
            self.last_stats = {
                "fetched_chunks": source.chunks.fetched_chunks,
                "fetched_bytes": source.chunks.fetched_bytes,
                "seeded_chunks": writer.stats.seeded_chunks,
                "present_chunks": writer.stats.present_chunks,
                "copied_chunks": writer.stats.copied_chunks,
                "delta_chunks": writer.stats.delta_chunks,
                "delta_fallbacks": writer.stats.delta_fallbacks,
            }
        state.state = UpdateState.VERIFYING
        self.store.save(state)

    def _verify(self, state: UpdaterState) -> EngineResult | None:
        assert state.target_version is not None
        target = self._target(state)
        manifest, _ = load_stored(self.roots.install_dir, state.target_version)
        try:
            # One read of the slot: the signed hashes, boot.img against boot.sig and the boot
            # keys the running image trusts, the verity tree.
            trust = bootkeys.load(self.roots.boot_keys_dir)
            checks = verify_slot(self.disk, target, manifest, trust)
        except InstallError as err:
            # The slot is not what was signed (written wrong, or changed on the card since it
            # verified before a cut trial or since it was staged): the next attempt writes it
            # again instead of re-verifying the same bytes (start() skips to VERIFYING for a
            # written slot); an admitted staged slot is installed again now.
            ProgressFile(self.roots.install_dir / PROGRESS_FILE).clear()
            state.slot_versions.pop(target, None)
            if not state.from_staged:
                raise
            self._restage(state, str(err))
            return None
        log.info("slot %s of %s verified: %s", target, state.target_version, checks)
        keep_as_seed(self.roots.install_dir, self.roots.slot_dir(target))
        ProgressFile(self.roots.install_dir / PROGRESS_FILE).clear()
        state.slot_versions[target] = state.target_version
        if state.staging_from is not None:
            return self._staged(state, target)
        self.staged.clear()  # the slot is about to be tried: no longer waiting for admission
        state.from_staged, state.restaged = False, None
        state.trial_attempts[str(state.target_version)] = state.attempts(state.target_version) + 1
        state.state = UpdateState.TRIAL_REBOOT
        state.reboot_boot_id = self.boot_id()
        self.store.save(state)
        return self._request_trial(state)

    def _staged(self, state: UpdaterState, target: Slot) -> EngineResult:
        """Record the verified slot (first: a restart then finds it) and go back to waiting."""
        assert state.target_version is not None and state.staging_from is not None
        digest = manifest_digest(self.roots.install_dir)
        if digest is None:
            raise InstallError(f"the stored manifest of {state.target_version} disappeared")
        self.staged.save(Staged(version=state.target_version, slot=target, manifest_sha256=digest))
        state.state, state.staging_from = state.staging_from, None
        self.store.save(state)
        log.info("staged %s in slot %s; waiting for admission", state.target_version, target)
        return EngineResult.IDLE

    def _restage(self, state: UpdaterState, reason: str) -> None:
        """An admitted staged slot failed its pre-trial check: install it as usual."""
        log.warning(
            "staged slot of %s failed the pre-trial check (%s); installing it again",
            state.target_version,
            reason,
        )
        self.staged.clear()
        state.slot_versions.pop(self._target(state), None)
        state.from_staged = False
        state.restaged = f"the staged slot failed the pre-trial check: {reason}"
        state.state = UpdateState.DOWNLOADING
        self.store.save(state)

    def _fail(self, state: UpdaterState, reason: str) -> None:
        if state.staging_from is not None:  # not an install yet: nothing counts against it
            log.error("staging %s failed: %s", state.target_version, reason)
            state.state, state.staging_from = state.staging_from, None
            state.last_failure = f"staging {state.target_version} failed: {reason}"
            self.store.save(state)
            self.events.put(EventKind.AGENT_ERROR, version=state.target_version, reason=reason)
            return
        log.error("update to %s failed: %s", state.target_version, reason)
        state.state = UpdateState.FAILED
        state.last_failure = reason
        self.store.save(state)
        self.events.put(EventKind.INSTALL_FAILED, version=state.target_version, reason=reason)

    # -- trial and commit ----------------------------------------------------------------------

    def _request_trial(self, state: UpdaterState) -> EngineResult:
        active = self.boot_state().slot
        autoboot.write(self.roots.autoboot, autoboot.Autoboot(committed=active))
        log.info(
            "rebooting into slot %s for a trial of %s", state.target_slot, state.target_version
        )
        self.firmware.request_trial_reboot()
        return EngineResult.REBOOTING

    def _trial_reboot(self, state: UpdaterState) -> EngineResult | None:
        booted, boot_id = self.boot_state(), self.boot_id()
        if boot_id == state.reboot_boot_id and booted.slot != state.target_slot:
            return self._request_trial(state)  # the agent restarted before the reboot happened
        if booted.tryboot and booted.slot == state.target_slot:
            state.state = UpdateState.TRIAL
            state.trial_boot_id = boot_id
            state.trial_deadline = time.time() + self.config.health.deadline_s
            self.store.save(state)
            self.events.put(EventKind.TRIAL_STARTED, version=state.target_version)
            return None
        reason = "the trial boot did not start or ended early (power cut, crash or watchdog reset"
        if state.target_slot is not None and bootimage.is_signed(self.disk, state.target_slot):
            # The bootloader leaves the OS no word on why it booted the committed slot; on a
            # secure-boot slot its refusal of the signature is one of the causes.
            reason += ", or the bootloader refused the slot's signed boot.img"
        return self._trial_failed(state, reason + ")", booted)

    def _trial(self, state: UpdaterState) -> EngineResult | None:
        booted = self.boot_state()
        if not (booted.tryboot and booted.slot == state.target_slot) or (
            self.boot_id() != state.trial_boot_id
        ):
            return self._trial_failed(
                state,
                "the trial boot ended before health checks passed (power cut, crash or "
                "watchdog reset)",
                booted,
            )
        left = (state.trial_deadline or 0) - time.time()
        if left <= 0:
            return self._trial_failed(
                state, "health checks did not finish before the deadline", booted
            )
        report = self.health.run(left)
        if not report.ok:
            return self._trial_failed(state, f"health check failed: {report.reason()}", booted)
        state.state = UpdateState.COMMITTING
        self.store.save(state)
        return None

    def _committing(self, state: UpdaterState) -> EngineResult | None:
        assert state.target_version is not None and state.target_slot is not None
        booted = self.boot_state()
        if booted.slot != state.target_slot:
            return self._trial_failed(
                state, "the device left the trial slot before the commit", booted
            )
        autoboot.write(self.roots.autoboot, autoboot.Autoboot(committed=state.target_slot))
        floor = raise_floor(state.version_floor, state.target_floor)
        state.version_floor = raise_floor(floor, state.target_version)
        state.trial_attempts.pop(str(state.target_version), None)
        state.state = UpdateState.COMMITTED
        self.store.save(state)
        self.events.put(
            EventKind.UPDATE_COMMITTED,
            version=state.target_version,
            message=f"slot {state.target_slot} committed",
        )
        return EngineResult.IDLE

    def _trial_failed(
        self, state: UpdaterState, reason: str, booted: BootState
    ) -> EngineResult | None:
        assert state.target_version is not None
        log.error("trial of %s failed: %s", state.target_version, reason)
        version = state.target_version
        if state.attempts(version) >= self.config.max_trial_attempts and not state.is_bad(version):
            state.bad_versions.append(version)
            reason = f"{reason}; marked bad after {state.attempts(version)} trial attempts"
            self.events.put(EventKind.VERSION_MARKED_BAD, version=version, reason=reason)
        state.state = UpdateState.ROLLED_BACK
        state.last_failure = reason
        state.rollback_unreported = True
        in_trial = booted.slot == state.target_slot
        state.reboot_boot_id = self.boot_id() if in_trial else None
        self.store.save(state)
        return None

    def _rolled_back(self, state: UpdaterState) -> EngineResult:
        booted = self.boot_state()
        if booted.slot == state.target_slot and booted.slot != self.committed_slot():
            log.warning("rolling back: rebooting into the committed slot")
            self.firmware.reboot()
            return EngineResult.REBOOTING
        if state.rollback_unreported:
            self.events.put(
                EventKind.ROLLBACK,
                version=state.target_version,
                reason=state.last_failure,
                message=f"running slot {booted.slot} again",
            )
            state.rollback_unreported = False
            self.store.save(state)
        return EngineResult.IDLE

    # -- manual control (CLI) --------------------------------------------------------------

    def commit_now(self) -> None:
        """Commit a running trial without waiting for the health checks."""
        state = self.load()
        if state.state is not UpdateState.TRIAL:
            raise UpdateStateError(f"nothing to commit: the updater is {state.state.value}")
        state.state = UpdateState.COMMITTING
        self.store.save(state)
        self._committing(state)

    def rollback_now(self, reason: str = "rolled back by an operator") -> EngineResult:
        """End a running trial as failed and reboot into the committed slot."""
        state = self.load()
        if state.state not in {UpdateState.TRIAL, UpdateState.TRIAL_REBOOT}:
            raise UpdateStateError(
                f"nothing to roll back: the updater is {state.state.value}",
                hint="a committed release is replaced by installing a newer one",
            )
        self._trial_failed(state, reason, self.boot_state())
        return self.resume()
