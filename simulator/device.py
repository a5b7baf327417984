"""One simulated device running the real updater: Agent and Engine on a file-backed disk.

A device is a folder: ``disk.img`` (a sparse copy of the assembled v1 disk), the config
partition "mounted" at ``boot-config/`` (``autoboot.txt``, the flasher's ``fleet.yaml``,
``simfw/``), ``data/`` and a ``root/`` holding what the running image contributes
(``/etc/metrica-fleet``: version, trusted root, updater.yaml, the seed indexes).

The firmware is played in-process per the simulated-firmware contract (ADR 0024): the
updater's reboot command only drops a marker file; the device's loop sees it, runs
``firmware_boot`` (consume the tryboot flag, pick a partition from autoboot.txt), draws a new
boot id and starts a fresh Agent, as a rebooted device would.
"""

from __future__ import annotations

import logging
import random
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from fleetcore.layout import Slot, autoboot_txt
from fleetcore.run import run
from fleetcore.wire import UpdateState
from simulator.releases import HARDWARE
from updater.agent import Agent
from updater.cli import open_device
from updater.errors import UpdaterError
from updater.firmware.simulated import firmware_boot
from updater.overlord import Identity, OverlordClient
from updater.paths import Roots
from updater.state import StateStore

log = logging.getLogger(__name__)

REBOOT_MARKER = "reboot-requested"
HEALTH_HOOK = "app-smoke-test"
FAILING_HOOK = "echo 'camera pipeline did not start: /dev/video0 missing' >&2\nexit 1\n"
PASSING_HOOK = "exit 0\n"


@dataclass(frozen=True)
class DeviceTiming:
    """How often a simulated device runs an agent cycle (real devices: every 30-120 s)."""

    poll_s: float = 1.0
    jitter: float = 0.3


@dataclass
class SimulatedDevice:
    name: str
    base: Path
    boots: int = 0
    crashed: str | None = None

    @property
    def roots(self) -> Roots:
        return Roots(
            root=self.base / "root",
            data=self.base / "data",
            boot_config=self.base / "boot-config",
            device_tree=self.base / "device-tree",
            sys=self.base / "sys",
            proc=self.base / "proc",
        )

    @property
    def disk(self) -> Path:
        return self.base / "disk.img"

    @property
    def marker(self) -> Path:
        return self.base / REBOOT_MARKER

    # -- provisioning (what flashing a card does) -------------------------------------------

    def provision(
        self,
        *,
        build: Path,
        version: str,
        root_json: bytes,
        overlord_url: str,
        enrollment_token: str,
        remote_shell: bool = False,
        remote_forward: bool = False,
        remote_logs: bool = True,
    ) -> None:
        """Flash v1's disk (sparse copy), lay out the mounts, drop the first-boot fleet.yaml
        (``remote_shell``: its owner allows remote shells, which then run on this host as the
        simulator's user; ``remote_forward``: port forwards, to this host's loopback; log
        tails are served as on a device, by this host's journalctl, unless ``remote_logs``
        is off)."""
        roots = self.roots
        for folder in (
            roots.etc,
            roots.data,
            roots.boot_config,
            roots.boot_id_file.parent,
            roots.device_tree,
            roots.slot_dir(Slot.A),
        ):
            folder.mkdir(parents=True, exist_ok=True)
        run(["cp", "--sparse=always", build / "disk.img", self.disk])
        roots.autoboot.write_text(autoboot_txt())
        roots.image_version_file.write_text(f"{version}\n")
        (roots.etc / "root.json").write_bytes(root_json)
        # What fleet-image assemble puts on the data partition: slot A's chunk indexes.
        for index in (build / "release").glob("*.index.json"):
            (roots.slot_dir(Slot.A) / index.name).write_bytes(index.read_bytes())
        config = {
            "disk": str(self.disk),
            "hardware": HARDWARE.value,
            "firmware": {
                "backend": "simulated",
                "reboot_command": ["touch", str(self.marker)],
                "tryboot_command": ["touch", str(self.marker)],
            },
            "health": {"docker": "off", "roles": "off", "deadline_s": 60},
            "transfer": {"backoff_initial_s": 0.2, "backoff_max_s": 2.0},
            "request_timeout_s": 10,
        }
        roots.image_config.write_text(yaml.safe_dump(config))
        first_boot: dict[str, object] = {
            "overlord_url": overlord_url,
            "enrollment_token": enrollment_token,
            "hostname": self.name,
        }
        remote = {
            kind: True
            for kind, allowed in (("shell", remote_shell), ("forward", remote_forward))
            if allowed
        }
        if not remote_logs:
            remote["logs"] = False
        if remote:
            first_boot["remote"] = remote
        roots.fleet_yaml.write_text(yaml.safe_dump(first_boot))
        self.set_health(failing=False)

    def set_health(self, *, failing: bool) -> None:
        """The device's own required health check: a failing one fails every trial boot."""
        folder = self.roots.fleet / "health.d" / "required.d"
        folder.mkdir(parents=True, exist_ok=True)
        hook = folder / HEALTH_HOOK
        hook.write_text("#!/bin/sh\n" + (FAILING_HOOK if failing else PASSING_HOOK))
        hook.chmod(0o755)

    # -- running ------------------------------------------------------------------------------

    def power_on(self) -> None:
        """The firmware: consume the tryboot flag, pick the partition, record a new boot id."""
        self.marker.unlink(missing_ok=True)
        firmware_boot(self.roots.boot_config)
        self.roots.boot_id_file.write_text(f"{uuid.uuid4()}\n")
        self.boots += 1

    def start_agent(self, overlord_url: str) -> Agent:
        """The updater as a freshly started service builds it."""
        device = open_device(self.roots)
        client = OverlordClient(overlord_url, timeout=device.config.request_timeout_s)
        return Agent(
            roots=self.roots,
            config=device.config,
            engine=device.engine,
            events=device.events,
            client=client,
        )

    def run(self, overlord_url: str, stop: threading.Event, timing: DeviceTiming) -> None:
        """Boot, then run agent cycles until ``stop``; a requested reboot boots again."""
        rng = random.Random(self.name)
        try:
            self.power_on()
            agent = self.start_agent(overlord_url)
            while not stop.is_set():
                try:
                    agent.cycle()
                except UpdaterError as err:
                    log.warning("%s: %s", self.name, err)
                if self.marker.exists():
                    self.power_on()
                    agent = self.start_agent(overlord_url)
                    continue
                stop.wait(timing.poll_s * rng.uniform(1 - timing.jitter, 1 + timing.jitter))
        except Exception as err:  # a crashed device must show up in the summary, not vanish
            log.exception("%s crashed", self.name)
            self.crashed = f"{type(err).__name__}: {err}"

    # -- what an observer sees ----------------------------------------------------------------

    def identity(self) -> Identity | None:
        return Identity.load(self.roots.identity_file)

    def update_state(self) -> tuple[UpdateState, str | None, str | None]:
        """(state, target version, last failure) from the updater's state file."""
        state = StateStore(self.roots.state_file).load()
        target = str(state.target_version) if state.target_version else None
        return state.state, target, state.last_failure
