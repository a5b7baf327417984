"""The daemon: enrol, resume any update, poll desired state, report, sleep; forever.

Polls are jittered between ``poll_min_s`` and ``poll_max_s`` (or the interval the Overlord
asks for); while the Overlord is unreachable the wait doubles up to
``offline_backoff_max_s``. Events go through the on-disk queue, so nothing said while offline
is lost unless the queue overflows, and that is reported too. Between polls the agent waits on
the Overlord for a remote session to be opened (ADR 0083), so it joins one within about a
second rather than at its next poll.
"""

from __future__ import annotations

import base64
import logging
import random
import shutil
import threading
import time
from pathlib import Path

from fleetcore import httpsig, redact
from fleetcore.errors import FleetError
from fleetcore.version import Version
from fleetcore.wire import (
    IN_PROGRESS_STATES,
    BootMode,
    DesiredState,
    EventBatch,
    EventKind,
    Health,
    Heartbeat,
    RegisterRequest,
    UpdateState,
)
from updater import bootmode, devicekey
from updater.board import board_report, read_serial
from updater.bootloader.fetch import install_from
from updater.config import UpdaterConfig
from updater.engine import Engine, EngineResult
from updater.errors import BoardRefused, ConfigError, FirmwareError, OverlordClientError
from updater.firstboot import move_secrets
from updater.lock import updater_lock
from updater.notify import Notifier
from updater.overlord import Identity, OverlordClient, OverlordRejected, OverlordUnreachable
from updater.paths import Roots
from updater.personalise import Personaliser
from updater.queue import EventQueue
from updater.remote.follow import RemoteFollower
from updater.remote.wait import SessionWait
from updater.rolesync import RoleSync
from updater.sources import open_source

log = logging.getLogger(__name__)

# The largest batch the wire format takes (``EventBatch``).
MAX_BATCH = 1000
# Halving a batch of 1000 down to one refused event takes ten refusals; two such events, or
# an Overlord that refuses everything (two refusals per dropped event), stop at this many
# per flush, and the rest is tried at the next one.
MAX_REFUSALS_PER_FLUSH = 24
# Cycles in a row whose heartbeat the Overlord refuses as unauthenticated (401) before the
# agent drops its credential and enrols again: an operator rotated or revoked it (ADR 0075).
# One refusal alone is not enough: a clock far off costs one 401, then the client signs on
# the Overlord's clock.
REENROL_AFTER_REFUSED_CYCLES = 2


class Agent:
    def __init__(
        self,
        *,
        roots: Roots,
        config: UpdaterConfig,
        engine: Engine,
        events: EventQueue,
        client: OverlordClient,
        notifier: Notifier | None = None,
        roles: RoleSync | None = None,
        personaliser: Personaliser | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.roots, self.config, self.engine, self.events = roots, config, engine, events
        self.client = client
        self.notifier = notifier or Notifier()
        self.roles = roles
        self.personaliser = personaliser
        self.rng = rng or random.Random()
        self.etag: str | None = None
        self.backoff = config.poll_min_s
        self.failed_version: Version | None = None
        # The pre-stage hint whose staging failed or was refused: not tried again until the
        # desired state changes.
        self.stage_failed: Version | None = None
        self.desired_version: Version | None = None
        # The desired bootloader release last installed, found running, or refused: not
        # tried again until the desired state names another.
        self.bootloader_done: Version | None = None
        self.desired: DesiredState | None = None
        self.interval: float | None = None
        self.refused_cycles = 0
        self.client.identity = Identity.load(roots.identity_file)
        self.key = devicekey.load_or_create(roots.device_key_file)
        self.client.key = self.key
        # Fixed for the boot; the agent process never outlives it.
        self.boot_mode = bootmode.boot_mode(roots, signed=self._signed_boot())
        self.remote = RemoteFollower(
            client, config.remote, version=lambda: str(self.engine.running_version())
        )
        self.session_wait = SessionWait(client, config.remote)
        self.stopping = threading.Event()
        self.corruption_reported = False
        log.info("boot mode: %s", self.boot_mode)

    # -- one cycle ---------------------------------------------------------------------------

    def cycle(self) -> float:
        """Do one round of work; return how long to sleep before the next one."""
        self.engine.reserve.ensure()  # taken again once a full /data has room
        self.personalise()  # first: Wi-Fi may be what reaches the Overlord
        self.watch_verity()
        outcome = self.resume()
        if outcome is EngineResult.REBOOTING:
            return self.config.poll_max_s
        try:
            self.enroll()
            self.flush_before_heartbeat()
            self.client.heartbeat(self.heartbeat())
            desired, self.etag = self.client.desired_state(self.etag)
        except OverlordUnreachable as err:
            self.backoff = min(self.backoff * 2, self.config.offline_backoff_max_s)
            log.warning("%s; next try in about %.0f s", err, self.backoff)
            return self.backoff * self.rng.uniform(0.5, 1.0)
        except OverlordRejected as err:
            if err.status == 401:
                self.credential_refused()
            raise
        self.backoff = self.config.poll_min_s
        self.refused_cycles = 0
        if desired is not None:  # a 200: the desired state changed, failures may be retried
            self.desired = desired
            self.failed_version = self.stage_failed = None
            self.desired_version = desired.os.version if desired.os else None
            self.interval = float(desired.poll_interval_s) if desired.poll_interval_s else None
        if self.converge_bootloader():
            return self.config.poll_max_s
        if self.desired_version is not None and not self.os_waits_for_bootloader():
            self.apply(self.desired_version)
        self.prestage()
        self.sync_roles()
        self.flush_quietly()
        named = self.desired.remote if self.desired is not None else None
        self.remote.follow(named)
        if named is not None:  # a session is pending or active: poll fast (ADR 0074)
            return float(min(named.poll_s, self.interval or named.poll_s))
        if (staged := self.staged_poll_s()) is not None:  # admission noticed in seconds
            return float(min(staged, self.interval or staged))
        if self.interval is not None:
            return self.interval
        return self.rng.uniform(self.config.poll_min_s, self.config.poll_max_s)

    def staged_poll_s(self) -> int | None:
        """The hint's poll interval once its release is staged here (ADR 0082), else None."""
        hint = self.desired.prestage if self.desired is not None else None
        if hint is None or hint.poll_s is None:
            return None
        return hint.poll_s if self.engine.staged_version() == hint.version else None

    def resume(self) -> EngineResult:
        """Continue any update; whatever it raises, the cycle goes on to heartbeat."""
        try:
            bootloader = self.engine.bootloader
            if bootloader is not None and bootloader.resume():
                return EngineResult.REBOOTING
            return self.engine.resume()
        except FleetError as err:
            log.error("update: %s", err)
        except Exception as err:  # the engine counts and gives up repeated ones
            self.report_unexpected("update", err)
        return EngineResult.WAITING

    def report_unexpected(self, where: str, err: BaseException) -> None:
        """One log line and a queued event; never raises (the queue may be on a full disk)."""
        text = f"{where}: {type(err).__name__}: {redact.SECRETS.mask(str(err))[:300]}"
        log.error("unexpected failure in %s", text)
        self._queue_report(text)

    def report_quarantine(self) -> None:
        """Tell the Overlord once that an unreadable state file was set aside."""
        quarantined = self.engine.store.quarantined
        if quarantined is None:
            return
        aside, reason = quarantined
        if self._queue_report(f"state file unreadable ({reason}); set aside as {aside.name}"):
            self.engine.store.quarantined = None

    def _signed_boot(self) -> bool:
        """Whether the firmware says the bootloader checked boot.sig; a firmware whose state
        cannot be read says nothing (the update engine reports that failure itself)."""
        try:
            return self.engine.firmware.boot_state().signed
        except FirmwareError as err:
            log.warning("boot mode: cannot read the firmware's boot state: %s", err)
            return False

    def watch_verity(self) -> None:
        """Report once per agent run that dm-verity refused a block of the running root."""
        if self.boot_mode is BootMode.UNSIGNED or self.corruption_reported:
            return
        if bootmode.corrupted():
            reason = (
                "dm-verity refused a block of the running root (dmsetup status: C): "
                "the card's system slot no longer reads as it was signed"
            )
            log.error("%s", reason)
            self.corruption_reported = self._queue_report(reason, EventKind.VERITY_CORRUPTION)

    def _queue_report(self, reason: str, kind: EventKind = EventKind.AGENT_ERROR) -> bool:
        """Queue an ``agent-error`` (or ``kind``); False (logged) when the queue cannot take it."""
        try:
            self.events.put(kind, reason=reason)
        except Exception as err:  # reporting must never fail the agent (a full disk)
            log.error("cannot queue the report: %s", err)
            return False
        return True

    def apply(self, version: Version) -> None:
        if version == self.failed_version:
            return
        source = self.config.release_url
        if source is None:
            raise ConfigError("no release repository: set overlord_url or repository_url")
        try:
            outcome = self.engine.start(version, source)
        except FleetError as err:  # refused (downgrade, marked bad) or broken: not retried
            # until the desired state changes
            log.error("cannot update to %s: %s", version, err)
            self.events.put(EventKind.INSTALL_FAILED, version=version, reason=str(err))
            self.failed_version = version
            return
        if self.engine.store.load().state is UpdateState.FAILED:
            self.failed_version = version
        log.info("update to %s: %s", version, outcome.value)

    def prestage(self) -> None:
        """Stage the hinted release when no install is due (ADR 0082); never reboots.

        Maintenance windows do not apply: they bound reboots, and staging reboots nothing.
        """
        hint = self.desired.prestage if self.desired is not None else None
        source = self.config.release_url
        if hint is None or source is None or hint.version == self.stage_failed:
            return
        running = self.engine.running_version()
        if self.desired_version is not None and self.desired_version > running:
            return  # an install is due (or failed): it comes first
        if self.engine.bootloader is not None and self.engine.bootloader.blocks_os_updates():
            return
        try:
            outcome = self.engine.stage(hint.version, source)
        except FleetError as err:  # refused (a downgrade, the floor): not retried
            log.error("cannot stage %s: %s", hint.version, err)
            self.stage_failed = hint.version
            return
        if outcome is EngineResult.IDLE and self.engine.staged_version() != hint.version:
            self.stage_failed = hint.version  # ignored, or failed and reported by the engine

    def converge_bootloader(self) -> bool:
        """Install the desired bootloader release, before any OS release and never during an
        OS update; True when the device reboots to apply it."""
        bootloader = self.engine.bootloader
        wanted = self.desired.bootloader if self.desired else None
        source = self.config.release_url
        if bootloader is None or wanted is None or source is None:
            return False
        if wanted.version == self.bootloader_done:
            return False
        if self.engine.store.load().state in IN_PROGRESS_STATES:
            return False  # serialised: the OS update ends first
        self.bootloader_done = wanted.version
        opened = open_source(
            source,
            roots=self.roots,
            trust_root=self.config.trust_root,
            transfer=self.config.transfer,
            proxies=self.config.proxy_rules(),
        )
        try:
            return install_from(
                bootloader,
                opened.reader,
                wanted.version,
                updater_version=self.engine.running_version(),
            )
        except FleetError as err:  # reported by install_from; retried when the desired state
            log.error("bootloader %s: %s", wanted.version, err)  # names another release
            return False
        finally:
            opened.close()

    def os_waits_for_bootloader(self) -> bool:
        bootloader = self.engine.bootloader
        if bootloader is None or not bootloader.blocks_os_updates():
            return False
        log.warning(
            "the OS update to %s waits: the bootloader is below the tryboot A/B minimum",
            self.desired_version,
        )
        return True

    def sync_roles(self) -> None:
        """Converge roles on the last desired state; a role failure never stops the agent."""
        if self.roles is None or self.desired is None:
            return
        try:
            self.roles.sync(self.desired)
        except FleetError as err:
            log.error("roles: %s", err)

    def personalise(self) -> None:
        """Apply hostname and Wi-Fi from fleet.yaml; a failure never stops the agent."""
        if self.personaliser is None:
            return
        try:
            self.personaliser.apply(enrolled=self.client.identity is not None)
        except (FleetError, OSError) as err:
            log.error("applying fleet.yaml: %s", err)

    def enroll(self) -> None:
        if self.client.identity is not None:
            return
        if not self.config.enrollment_token or not self.config.hostname:
            raise ConfigError(
                "not enrolled and no enrollment token",
                hint="put overlord_url, enrollment_token and hostname in fleet.yaml",
            )
        try:
            hardware = self.engine.hardware
        except BoardRefused as err:  # logged at every cycle; the Overlord never hears of it
            raise BoardRefused(f"not enrolling: {err}", hint=err.hint) from err
        booted = self.engine.boot_state()
        try:
            identity = self.client.register(
                RegisterRequest(
                    enrollment_token=self.config.enrollment_token,
                    hostname=self.config.hostname,
                    hardware=hardware,
                    image_version=self.engine.running_version(),
                    booted_slot=booted.slot,
                    # The board's serial: a reflashed card re-enrols as the same device.
                    serial=read_serial(self.roots.device_tree, self.roots.proc),
                    public_key=base64.b64encode(httpsig.public_bytes(self.key)).decode(),
                )
            )
        except OverlordRejected as err:
            raise ConfigError(f"enrolment refused: {err}") from err
        # Through the reserve: an identity not saved means a new enrolment at every cycle.
        self.engine.reserve.write(lambda: identity.save(self.roots.identity_file))
        move_secrets(self.roots.fleet_yaml, self.roots.firstboot_copy)
        self.events.put(EventKind.ENROLLED, message=f"device {identity.device_id}")

    def credential_refused(self) -> None:
        """Count a cycle whose credential the Overlord refused; after
        :data:`REENROL_AFTER_REFUSED_CYCLES` in a row, forget it so the next cycle enrols again
        with the enrolment token kept on /data and the key the device holds. The old
        credential stays on /data until the new one replaces it. The Overlord decides: a
        decommissioned device, a revoked enrolment token or another device's key is refused."""
        self.refused_cycles += 1
        if self.client.identity is None or self.refused_cycles < REENROL_AFTER_REFUSED_CYCLES:
            return
        log.warning(
            "the Overlord refused this device's credential %d cycles in a row (rotated or "
            "revoked by an operator): enrolling again",
            self.refused_cycles,
        )
        self.client.identity = None
        self.refused_cycles = 0

    def heartbeat(self) -> Heartbeat:
        state = self.engine.store.load()
        booted = self.engine.boot_state()
        health = {
            UpdateState.ROLLED_BACK: Health.DEGRADED,
            UpdateState.FAILED: Health.DEGRADED,
            UpdateState.COMMITTED: Health.HEALTHY,
        }.get(state.reported, Health.UNKNOWN)
        return Heartbeat(
            image_version=self.engine.running_version(state),
            booted_slot=booted.slot,
            committed_slot=self.engine.committed_slot(),
            update_state=state.reported,
            roles=self.roles.status() if self.roles else [],
            health=health,
            free_data_bytes=shutil.disk_usage(self.roots.data).free,
            uptime_s=time.monotonic(),
            dropped_events=self.events.dropped_total,
            node_exporter=self.config.node_exporter,
            board=board_report(self.engine.board),
            boot_mode=self.boot_mode,
            config_digest=self.roles.applied_digest if self.roles else None,
            bootloader=self.engine.bootloader.report() if self.engine.bootloader else None,
            staged_version=self.engine.staged_version(),
        )

    def flush(self) -> None:
        """Send queued events in order, oldest first, until the queue is empty.

        A batch the Overlord refuses for its content (400, 413, 422: an event a newer
        Overlord no longer takes, or one an older release queued) is halved until the
        refused event goes alone; that event is dropped and counted (``telemetry-dropped``
        and the heartbeat's ``dropped_events``) and the rest goes on, so one poison event
        never blocks the queue. The batch grows back by doubling after each success.
        Anything else (no answer, 5xx, 401) keeps every event for a later flush. At most
        :data:`MAX_REFUSALS_PER_FLUSH` refusals are taken per flush, so an Overlord that
        refuses everything costs a bounded number of requests before the heartbeat.
        """
        limit, refusals = MAX_BATCH, 0
        while batch := self.events.pending(limit):
            try:
                ack = self.client.send_events(EventBatch(events=batch))
            except OverlordRejected as err:
                if not err.refuses_content or refusals >= MAX_REFUSALS_PER_FLUSH:
                    raise
                refusals += 1
                if len(batch) > 1:
                    limit = len(batch) // 2
                    continue
                log.error(
                    "the Overlord refuses queued event %d (%s); dropped: %s",
                    batch[0].seq,
                    batch[0].kind.value,
                    err,
                )
                self.events.drop_refused(batch[0])
            else:
                self.events.ack(ack.last_seq)
                if ack.last_seq < batch[-1].seq:
                    break
            limit = min(2 * limit, MAX_BATCH)

    def flush_before_heartbeat(self) -> None:
        """Send queued events first; whatever happens to them, the heartbeat is tried.

        A batch the Overlord refuses or cannot take, or a queue that cannot be read, is
        logged and the heartbeat still goes out: the heartbeat is the device's sign of life,
        and one bad event or a broken events route must not silence it.
        """
        try:
            self.flush()
        except FleetError as err:
            log.error("events not sent: %s", err)
        except Exception as err:
            self.report_unexpected("event queue", err)

    def flush_quietly(self) -> None:
        try:
            self.flush()
        except OverlordUnreachable as err:
            log.info("events stay queued: %s", err)
        except OverlordClientError as err:  # refused (401, or too many refusals): try next cycle
            log.error("events not sent: %s", err)

    # -- the loop ----------------------------------------------------------------------------

    def run_forever(self, *, watchdog_s: float | None, lock: Path) -> None:
        """Cycles until :meth:`stop` (a service is stopped by its signal instead)."""
        self.notifier.ready()
        while not self.stopping.is_set():
            try:
                with updater_lock(lock, wait=True):
                    wait = self.cycle()
            except FleetError as err:  # expected failures: say so, keep running, try later
                log.error("%s", err)
                wait = self.config.poll_max_s
            except Exception as err:
                # Anything else (out of memory, a full disk, a bug) must not end the agent:
                # systemd would restart it into the same failure and it would stop
                # heartbeating. It is reported and retried after a backoff.
                self.report_unexpected("agent cycle", err)
                self.backoff = min(self.backoff * 2, self.config.offline_backoff_max_s)
                wait = max(self.backoff, self.config.poll_min_s)
            self.report_quarantine()
            self.notifier.status(f"{self.state_name()}; next poll in {wait:.0f} s")
            self._sleep(wait, watchdog_s)
        self.remote.stop()

    def stop(self) -> None:
        """Ends :meth:`run_forever` after its cycle, and its wait between polls at once; any
        thread."""
        self.stopping.set()
        self.client.shut_down()

    def state_name(self) -> str:
        try:
            return self.engine.store.load().state.value
        except Exception as err:
            return f"state unreadable ({type(err).__name__})"

    def _sleep(self, seconds: float, watchdog_s: float | None) -> None:
        """Until the next poll, a remote session being opened, or :meth:`stop`."""
        end = time.monotonic() + seconds
        while not self.stopping.is_set() and (left := end - time.monotonic()) > 0:
            self.notifier.watchdog()
            step = min(left, watchdog_s or left)
            if step >= 1 and self.waits_for_sessions() and self.session_wait.ready():
                if self.session_wait.wait(step, self.stopping):
                    return
            else:
                self.stopping.wait(step)

    def waits_for_sessions(self) -> bool:
        """Whether to wait on the Overlord between polls: not while a session is named (the
        agent polls every ``poll_s`` then)."""
        return self.desired is None or self.desired.remote is None
