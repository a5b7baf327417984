"""Issue 8's product scenarios: the real fleet image on a simulated Pi, an Overlord on the host.

One story on one card, in file order: each scenario starts where the previous one left the
device. The image is built once per session (`fleet-image build --backend debootstrap`, base
rootfs from the content-keyed cache), each version assembled from it with `--boot-key` (secure
boot and dm-verity, ADR 0070/0071) and signed with `fleet-sign`; the board's bootloader holds
the customer key. See product/README.md for the story and its figures.

A boot ends as soon as the condition under test is observed (a console line, or the Overlord
showing it, polled every 2 s): every end but a guest reboot is a power cut, which the config
partition survives since the updater flushes the FAT filesystem around each of its writes
there (`fleetcore.atomic.atomic_write_fat`, ADR 0025).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from harness.board import BootRecord, Deadlines, SimulatedPi
from harness.disk import ext4_volume, fat_volume, partition
from harness.qemu import End, MachineSpec, PowerCut, loopback_service
from product import card, images, roles
from product.overlord import Overlord
from product.signing import Repository

from fleetcore import verity
from fleetcore.net import free_port

pytestmark = [pytest.mark.qemu, pytest.mark.timeout(5400)]

# The harness's watchdog plays the Pi's hardware watchdog, which systemd arms as it starts:
# a boot is healthy once systemd runs. A trial that never gets there (v4, no init) is reset.
# Under TCG on this loaded 2-core host systemd started 20-90 s after power-on (see README).
HEALTHY_MARKER = "Welcome to "
# A boot that never meets its end condition is switched off here; no scenario waits for it.
DEADLINES = Deadlines(watchdog=180.0, session=1500.0)
SLOT_A_BOOT, SLOT_B_BOOT = 2, 3
# Each version's change and the key its boot.img is signed with: 4.0.0 is a sound image whose
# boot.img another key signed, which the updater refuses before a trial and the board's
# bootloader would refuse too (issue 17's scenario 4); 5.0.0 is sound, and its slot's boot
# partition is swapped on the card for 4.0.0's after the updater checked it.
VERSIONS: dict[str, tuple[images.Change, Path]] = {
    "1.0.0": (images.no_change, images.CUSTOMER_KEY),
    "2.0.0": (images.no_change, images.CUSTOMER_KEY),
    "3.0.0": (images.failing_health_check, images.CUSTOMER_KEY),
    "4.0.0": (images.no_change, images.WRONG_KEY),
    "5.0.0": (images.no_change, images.CUSTOMER_KEY),
}
# What the agent prints (drop-in of the QEMU layer: its log on the serial console).
AGENT = "fleet-updater["
TRIAL_REQUEST = "rebooting into slot {slot} for a trial of {version}"
OFFLINE = "next try in about"
# The role the story assigns: version 1.0.0 healthy, 2.0.0 with a healthcheck that never passes.
ROLE_VERSIONS = {"1.0.0": True, "2.0.0": False}
# The safe-mode scenario's role: 1.0.0 exits at every start (a crash loop), 1.0.1 is its fix.
CRASH_VERSIONS = {"1.0.0": True, "1.0.1": False}
# The safe-mode stack's status page in the guest (safe-mode/compose.yaml publishes it).
STATUS_PAGE_PORT = 8088


class Product:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.repo = Repository.init(workdir)
        self.session = workdir / "session"
        self.session.mkdir()
        self.overlord = Overlord(self.session, self.repo.repo, self.repo.keys)
        self.releases: dict[str, images.Release] = {}
        self.role_image: roles.RoleImage | None = None
        # the host end of QEMU's forward to the guest's status page
        self.status_port = free_port()
        self.overlord_back: datetime | None = None
        """When the Overlord came back after the outage of the v5 scenario."""
        self.chunks_before_rewrite: list[str] = []
        """The chunk GETs of the v2 install up to the refusal of its changed slot (the
        install after it writes the slot again)."""


@pytest.fixture(scope="session")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    workdir = images.workdir(tmp_path_factory)
    made = Product(workdir)
    rootfs = images.build_rootfs(workdir, made.repo.root_json)
    for version, (change, key) in VERSIONS.items():
        release = images.assemble(rootfs, workdir, version, change, boot_key=key)
        made.repo.add_release(release.release_dir, version)
        made.releases[version] = release
    made.role_image = roles.build_image(workdir)
    for version, healthy in ROLE_VERSIONS.items():
        bundle = roles.pack(made.role_image, workdir, version, healthy=healthy)
        made.repo.add_role(bundle.archive, roles.NAME, version)
    for version, crashes in CRASH_VERSIONS.items():
        bundle = roles.pack_crash(made.role_image, workdir, version, crashes=crashes)
        made.repo.add_role(bundle.archive, roles.CRASH_NAME, version)
    made.overlord.start()
    try:
        yield made
    finally:
        made.overlord.stop()


@pytest.fixture(scope="session")
def board(product: Product) -> SimulatedPi:
    token = product.overlord.token("enrollment")
    disk = card.flash(product.releases["1.0.0"].disk, product.session / "card.img", token)
    return SimulatedPi(
        disk,
        product.session / "board",
        healthy_marker=HEALTHY_MARKER,
        deadlines=DEADLINES,
        customer_key=images.CUSTOMER_PUBLIC_KEY.read_bytes(),
        spec=MachineSpec(
            extra_args=loopback_service(
                product.overlord.port, forwards={product.status_port: STATUS_PAGE_PORT}
            )
        ),
    )


# -- what the Overlord shows ---------------------------------------------------------------


def only_device(overlord: Overlord) -> dict[str, Any]:
    devices = overlord.devices()
    assert [d["hostname"] for d in devices] == [card.HOSTNAME], devices
    return devices[0]


def events(overlord: Overlord, kind: str | None = None, version: str | None = None) -> list[Any]:
    device = overlord.the_device()
    if device is None:
        return []
    found = overlord.events(device["id"])
    return [
        e
        for e in found
        if (kind is None or e["kind"] == kind) and (version is None or e["version"] == version)
    ]


def shows(overlord: Overlord, kind: str, version: str | None = None, **device: str) -> PowerCut:
    """Cut the power once the Overlord has an event ``kind`` and the device ``device`` fields."""

    def seen() -> bool:
        found = overlord.the_device()
        if found is None or any(found.get(k) != v for k, v in device.items()):
            return False
        return bool(events(overlord, kind, version))

    fields = ", ".join(f"{k}={v}" for k, v in device.items())
    return PowerCut(when=seen, label=f"the Overlord shows {kind} {version or ''} {fields}")


# -- the board ----------------------------------------------------------------------------


def timed(record: BootRecord) -> BootRecord:
    print(record.line())
    return record


def boot_until(board: SimulatedPi, cut: PowerCut, *, max_boots: int) -> list[BootRecord]:
    """Boot until ``cut`` ends a boot (the guest may reboot on its own in between)."""
    records = []
    for _ in range(max_boots):
        records.append(timed(board.boot(power_cut=cut)))
        if records[-1].end is End.POWER_CUT:
            return records
    pytest.fail(f"{cut.describe()} did not happen in {max_boots} boots:\n{board.decisions()}")


def kernel_command_line(board: SimulatedPi, record: BootRecord) -> str:
    for line in board.console(record).splitlines():
        if "Kernel command line:" in line:
            return line
    pytest.fail(f"boot {record.index} printed no kernel command line")


def chunk_occurrences(release: images.Release) -> Counter[str]:
    """How often each chunk occurs in the release's images (boot and system indexes)."""
    found: Counter[str] = Counter()
    for index in ("boot.index.json", "system.index.json"):
        chunks = json.loads((release.release_dir / index).read_text())["chunks"]
        found.update(f"{chunk['sha256'][:4]}/{chunk['sha256']}" for chunk in chunks)
    return found


def config_partition_intact(board: SimulatedPi) -> dict[str, bytes | None]:
    """What the firmware reads (mtools, no mount) after a cut: a sound FAT and whole files."""
    config = fat_volume(board.disk, label="config")
    config.check()
    return {name: config.read(name) for name in ("autoboot.txt", "fleet.yaml")}


def autoboot_all(data: bytes | None) -> int:
    assert data is not None, "autoboot.txt is gone"
    section, found = "", {}
    for line in data.decode().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line:
            found[(section, line.split("=")[0])] = line.split("=", 1)[1]
    return int(found[("all", "boot_partition")])


# -- the story ----------------------------------------------------------------------------


def test_first_boot_enrols_and_reports_v1(product: Product, board: SimulatedPi) -> None:
    overlord = product.overlord
    record = timed(board.boot(power_cut=shows(overlord, "enrolled", image_version="1.0.0")))

    assert (record.partition, record.tryboot) == (SLOT_A_BOOT, False)
    assert record.healthy
    device = only_device(overlord)
    assert device["image_version"] == "1.0.0"
    assert device["booted_slot"] == "a"
    assert device["admin_status"] == "active"
    # Enrolment moved the secrets off the FAT partition onto /data, and the power cut 0-2 s
    # after that rewrite left fleet.yaml whole on a sound FAT.
    data = ext4_volume(board.disk, label="data")
    assert b"enrollment_token" in (data.read("/fleet/firstboot.yaml") or b"")
    files = config_partition_intact(board)
    fleet = yaml.safe_load(files["fleet.yaml"] or b"")
    assert fleet["hostname"] == card.HOSTNAME
    assert "enrollment_token" not in fleet
    assert autoboot_all(files["autoboot.txt"]) == SLOT_A_BOOT


def test_power_cuts_during_the_v2_install_leave_v1_bootable(
    product: Product, board: SimulatedPi
) -> None:
    overlord = product.overlord
    overlord.rollout("to-2", "2.0.0")

    # Cut 1: in the middle of writing slot B, 5 s after the Overlord served the first chunk.
    first_chunk: list[float] = []

    def writing() -> bool:
        if not first_chunk and overlord.chunk_requests():
            first_chunk.append(time.monotonic())
        return bool(first_chunk) and time.monotonic() - first_chunk[0] >= 5.0

    mid = timed(board.boot(power_cut=PowerCut(when=writing, label="5 s into the download")))
    # Cut 2: the install resumed, verified and asked for the trial reboot; the power goes
    # at that console line, before the reboot.
    trial_request = TRIAL_REQUEST.format(slot="b", version="2.0.0")
    late = timed(board.boot(power_cut=PowerCut(marker=trial_request)))

    for record in (mid, late):
        assert (record.partition, record.tryboot, record.end) == (
            SLOT_A_BOOT,
            False,
            End.POWER_CUT,
        )
    assert "update to 2.0.0" not in board.console(mid)  # it was cut inside the install
    files = config_partition_intact(board)
    assert autoboot_all(files["autoboot.txt"]) == SLOT_A_BOOT
    assert only_device(overlord)["image_version"] == "1.0.0"


def flip_byte(card_image: Path, label: str, offset: int) -> None:
    """Change one byte of partition ``label`` on the card, as someone with the card could."""
    part = partition(card_image, label=label)
    with card_image.open("r+b") as disk:
        disk.seek(part.start + offset)
        byte = disk.read(1)[0]
        disk.seek(part.start + offset)
        disk.write(bytes([byte ^ 0xFF]))


def replace_partition(card_image: Path, label: str, source: Path) -> None:
    """Write partition ``label`` of disk image ``source`` over the card's (same layout), as
    someone with the card could."""
    part, theirs = partition(card_image, label=label), partition(source, label=label)
    assert part.size == theirs.size, (part, theirs)
    with source.open("rb") as src, card_image.open("r+b") as disk:
        src.seek(theirs.start)
        disk.seek(part.start)
        disk.write(src.read(theirs.size))


def test_a_system_slot_changed_on_the_card_is_never_tried(
    product: Product, board: SimulatedPi
) -> None:
    """Issue 17's scenario 3: v2 is written and verified, the power went at the trial request;
    then one byte of system_b is changed on the card. The next boot's updater checks the slot
    again before the trial, refuses it and reports why; the board never boots slot B."""
    overlord = product.overlord
    flip_byte(board.disk, "system_b", 64 << 20)  # inside the squashfs, far from its tree
    refused = shows(overlord, "install-failed", "2.0.0")
    record = timed(board.boot(power_cut=refused))

    assert (record.partition, record.tryboot, record.end) == (SLOT_A_BOOT, False, End.POWER_CUT)
    (event,) = events(overlord, "install-failed", "2.0.0")
    print(f"refused before the trial: {event['reason']}")
    assert "system_b does not read back as the signed system image of 2.0.0" in event["reason"]
    assert autoboot_all(config_partition_intact(board)["autoboot.txt"]) == SLOT_A_BOOT
    assert only_device(overlord)["image_version"] == "1.0.0"
    product.chunks_before_rewrite = list(overlord.chunk_requests())


def test_the_root_is_read_through_dm_verity(product: Product, board: SimulatedPi) -> None:
    """Every version is assembled with --boot-key: the board's bootloader verified boot_a's
    boot.sig against the customer key and booted the kernel and initramfs inside boot.img
    (it boots nothing else), whose cmdline.txt pins the root. The first boot's initramfs mapped
    system_a through dm-verity with that root hash, systemd ran from that device, and the
    device reports the mode (its heartbeats of the boots above). No boot of its own."""
    first = board.records[0]
    assert first.label == "boot_a" and first.end is not End.UNBOOTABLE
    params = verity.from_cmdline(kernel_command_line(board, first).split(":", 1)[1])
    assert params is not None
    console = board.console(first)
    assert f"through dm-verity, root hash {params.root_hash}" in console
    # The initramfs loaded the arm64 SHA-256 drivers before the mapping (the virt board's
    # Cortex-A72 model has the SHA-2 instructions: sha256-ce); generic C hashing is the fallback.
    hashing = re.search(r"fleet-verity: SHA-256 by (\S+)", console)
    assert hashing is not None and hashing.group(1) in ("sha256-ce", "sha256-arm64"), hashing
    # dmsetup table: NAME: START SECTORS verity 1 DATA HASH 4096 4096 BLOCKS HASH_START ALG
    # ROOT SALT, the devices as major:minor.
    table = [line for line in console.splitlines() if f"{verity.MAPPER_NAME}: 0 " in line]
    assert table, "dmsetup table printed no fleet-root line"
    fields = table[0].split(f"{verity.MAPPER_NAME}: ", 1)[1].split()
    assert fields[2:4] == ["verity", "1"]
    assert fields[8:13] == [
        str(params.data_blocks), str(params.hash_offset // verity.BLOCK), "sha256",
        params.root_hash, params.salt,
    ]  # fmt: skip
    assert only_device(product.overlord)["boot_mode"] == "secure-boot+verity"


def test_v2_is_committed_on_slot_b(product: Product, board: SimulatedPi) -> None:
    overlord = product.overlord
    committed = shows(
        overlord,
        "update-committed",
        "2.0.0",
        image_version="2.0.0",
        booted_slot="b",
        committed_slot="b",
    )
    records = boot_until(board, committed, max_boots=4)

    trial = records[-1]
    assert (trial.partition, trial.tryboot) == (SLOT_B_BOOT, True)
    assert "root=PARTLABEL=system_b" in kernel_command_line(board, trial)
    device = only_device(overlord)
    assert (device["image_version"], device["committed_slot"]) == ("2.0.0", "b")
    # The install resumed after the cuts instead of starting over, which would have served
    # the chunks fetched before the first cut a second time. A chunk served more often than
    # it occurs in the release was fetched again for the same place (in flight at the cut).
    # The install after the refusal of the changed slot wrote it again (counted apart).
    served = Counter(product.chunks_before_rewrite)
    print(f"chunk GETs to write the slot again: {len(overlord.chunk_requests()) - served.total()}")
    occurs = chunk_occurrences(product.releases["2.0.0"])
    again = sum(max(0, n - occurs[chunk]) for chunk, n in served.items())
    print(
        f"chunk GETs {sum(served.values())}, distinct {len(served)}, in the release "
        f"{sum(occurs.values())} ({len(occurs)} distinct), fetched again for the same place "
        f"{again}"
    )
    assert sum(served.values()) < 2 * len(served)


def test_power_cut_right_after_commit_leaves_v2_committed(
    product: Product, board: SimulatedPi
) -> None:
    # The previous scenario cut the power 0-2 s after the Overlord received the commit, so
    # within the kernel's 30 s writeback of the autoboot.txt rewrite.
    files = config_partition_intact(board)
    assert autoboot_all(files["autoboot.txt"]) == SLOT_B_BOOT
    assert "enrollment_token" not in yaml.safe_load(files["fleet.yaml"] or b"")

    record = timed(board.boot(power_cut=PowerCut(marker="update to 2.0.0: idle")))

    assert (record.partition, record.tryboot) == (SLOT_B_BOOT, False)
    assert "root=PARTLABEL=system_b" in kernel_command_line(board, record)


def role_status(overlord: Overlord) -> list[dict[str, Any]]:
    device = overlord.the_device()
    return [] if device is None else list(device["roles"])


def rolled_back_from(overlord: Overlord, version: str) -> list[Any]:
    """The role's rollbacks away from ``version`` (the event names the version it went back
    to; its message says from which)."""
    return [
        e
        for e in events(overlord, "role-rollback")
        if e["data"].get("role") == roles.NAME and f" from {version} to " in e["message"]
    ]


def gate_failures(overlord: Overlord, version: str) -> list[Any]:
    return [
        e
        for e in events(overlord, "role-failed", version)
        if e["data"].get("role") == roles.NAME and e["message"] == "health gate failed"
    ]


def runs_role(overlord: Overlord, version: str, done: Callable[[], bool], label: str) -> PowerCut:
    """Cut the power once ``done`` holds and a heartbeat shows ``version`` of the role running
    healthy."""
    healthy = [{"name": roles.NAME, "version": version, "health": "healthy", "safe_mode": False}]

    def seen() -> bool:
        return role_status(overlord) == healthy and done()

    return PowerCut(when=seen, label=f"the Overlord shows {label}, {version} healthy")


def assert_runs_committed(overlord: Overlord) -> None:
    """The role scenarios run on whatever OS the story committed last, with no update going."""
    device = only_device(overlord)
    assert device["booted_slot"] == device["committed_slot"], device


def test_assigned_role_runs_on_the_guest_docker(product: Product, board: SimulatedPi) -> None:
    overlord = product.overlord
    image = product.role_image
    assert image is not None
    overlord.rollout("web-1", "1.0.0", role=roles.NAME)
    applied = runs_role(
        overlord,
        "1.0.0",
        lambda: bool(events(overlord, "role-applied", "1.0.0")),
        "role-applied 1.0.0",
    )
    record = timed(board.boot(power_cut=applied))

    assert not record.tryboot
    assert_runs_committed(overlord)
    assert f"role-applied {roles.NAME} 1.0.0" in board.console(record)
    (event,) = events(overlord, "role-applied", "1.0.0")
    assert event["data"]["role"] == roles.NAME
    # The guest's dockerd loaded the archive the signed bundle carried into its data-root on
    # /data, and the staged version keeps it for a rollback.
    data = ext4_volume(board.disk, label="data")
    loaded = f"/var/lib/docker/image/overlay2/imagedb/content/sha256/{image.hex}"
    assert data.read(loaded) is not None, f"{image.image_id} is not in the guest's data-root"
    staged = f"/roles/{roles.NAME}/1.0.0/images/{image.hex}.tar"
    assert data.read(staged) == image.archive.read_bytes()


def test_role_v2_failing_its_health_check_rolls_back_to_v1(
    product: Product, board: SimulatedPi
) -> None:
    """2.0.0 never becomes healthy: the manager goes back to 1.0.0 on its own. The first boot
    is cut in the middle of that swap (``current`` names 2.0.0, whose health gate just
    failed); the next boot still ends with a runnable role: 1.0.0, healthy."""
    overlord = product.overlord
    overlord.abort_unfinished_rollouts()
    overlord.rollout("web-2", "2.0.0", role=roles.NAME)
    gate_failed = f"role-failed {roles.NAME} 2.0.0: health gate failed"
    cut = timed(board.boot(power_cut=PowerCut(marker=gate_failed)))
    # Whether the cut left ``current`` on 2.0.0 (the next boot tries it again and rolls back)
    # or already back on 1.0.0 (the next start reports the rollback it finished), the health
    # gate failure and the rollback reach the Overlord and 1.0.0 runs healthy; a heartbeat
    # shows 1.0.0 healthy only once the manager started it again.
    back = runs_role(
        overlord,
        "1.0.0",
        lambda: (
            bool(gate_failures(overlord, "2.0.0")) and bool(rolled_back_from(overlord, "2.0.0"))
        ),
        "2.0.0's failed health gate and the rollback from it",
    )
    records = boot_until(board, back, max_boots=2)

    for record in (cut, *records):
        assert not record.tryboot
    assert_runs_committed(overlord)
    failed = gate_failures(overlord, "2.0.0")
    rollbacks = rolled_back_from(overlord, "2.0.0")
    print(f"2.0.0's health gate failed {len(failed)} times: {failed[0]['reason']}")
    print(f"rollbacks from 2.0.0: {[e['message'] for e in rollbacks]}")
    assert rollbacks, "the Overlord has no rollback from 2.0.0"
    assert all(e["version"] == "1.0.0" for e in rollbacks)
    assert not events(overlord, "role-applied", "2.0.0")


def status_page(product: Product) -> dict[str, Any] | None:
    """The guest's safe-mode status page, from the host through QEMU's port forward."""
    try:
        response = httpx.get(f"http://127.0.0.1:{product.status_port}/status.json", timeout=5)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    page: dict[str, Any] = response.json()
    return page


def role_versions(overlord: Overlord) -> dict[str, tuple[str | None, str]]:
    return {r["name"]: (r["version"], r["health"]) for r in role_status(overlord)}


def test_crash_looping_role_puts_the_device_in_safe_mode_until_its_fix(
    product: Product, board: SimulatedPi
) -> None:
    """e2e-crash 1.0.0 exits at every start: after ``safe_mode_after`` (3) failed starts in a
    row the role manager stops it and starts the safe-mode stack the OS image ships, with its
    image inside (the guest reaches nothing but the Overlord: no registry). In one boot: the
    Overlord shows the device in safe mode with a ``safe-mode-entered`` event naming the role,
    and the status page answers from the host through QEMU's forward; then 1.0.1, healthy, is
    rolled out, applies, and safe mode is left, so the story goes on without it."""
    overlord = product.overlord
    overlord.abort_unfinished_rollouts()
    overlord.rollout("crash-1", "1.0.0", role=roles.CRASH_NAME)
    seen: dict[str, Any] = {}

    def in_safe_mode() -> None:
        """Once the Overlord and the page both show safe mode: record them, roll out the fix."""
        device = overlord.the_device()
        if device is None or not device["safe_mode"] or not events(overlord, "safe-mode-entered"):
            return
        stack = [r for r in device["roles"] if r["name"] == "safe-mode"]
        if not stack or stack[0]["health"] != "healthy":
            return
        page = status_page(product)
        if page is None or not page["safe_mode"]:
            return
        seen.update(page=page, device=device, entered=time.monotonic())
        overlord.abort_unfinished_rollouts()
        overlord.rollout("crash-2", "1.0.1", role=roles.CRASH_NAME)

    def entered_then_left() -> bool:
        if "page" not in seen:
            seen.setdefault("start", time.monotonic())
            in_safe_mode()
            return False
        device = overlord.the_device()
        return (
            device is not None
            and not device["safe_mode"]
            and bool(events(overlord, "safe-mode-left"))
            and role_versions(overlord).get(roles.CRASH_NAME) == ("1.0.1", "healthy")
        )

    record = timed(
        board.boot(
            power_cut=PowerCut(
                when=entered_then_left,
                label="the Overlord shows safe mode, the status page answers, then 1.0.1 ends it",
            )
        )
    )

    assert "page" in seen, "the device never showed safe mode with its status page answering"
    print(
        f"safe mode seen {seen['entered'] - seen['start']:.0f} s into the boot's polling; "
        f"boot {record.seconds:.0f} s"
    )
    assert not record.tryboot
    assert_runs_committed(overlord)
    # What the Overlord showed while the device was in safe mode.
    during = {r["name"]: r for r in seen["device"]["roles"]}
    assert during["safe-mode"]["health"] == "healthy", during
    assert during[roles.CRASH_NAME]["safe_mode"], during
    (entered,) = events(overlord, "safe-mode-entered")
    assert entered["data"]["role"] == roles.CRASH_NAME
    assert entered["version"] == "1.0.0"
    assert "failed 3 times in a row" in entered["message"]
    assert len(events(overlord, "role-failed", "1.0.0")) >= 3
    # The page the guest's httpd served: the agent's status, the failing role and its error.
    page = seen["page"]
    assert f"role {roles.CRASH_NAME} 1.0.0 failed" in page["reason"]
    assert roles.CRASH_NAME in {e["role"] for e in page["last_errors"]}
    assert page["device_id"], page
    print(f"status page: {json.dumps(page, sort_keys=True)}")
    # The stack ran from the bundle in the OS image, its image loaded from the archive it
    # carries into the guest's data-root on /data.
    data = ext4_volume(board.disk, label="data")
    staged = data.read("/roles/safe-mode/1.0.0/role.yaml")
    assert staged is not None, "the safe-mode stack was never staged"
    (image,) = yaml.safe_load(staged)["images"]
    hexid = image.removeprefix("sha256:")
    assert data.read(f"/roles/safe-mode/1.0.0/images/{hexid}.tar") is not None
    loaded = f"/var/lib/docker/image/overlay2/imagedb/content/sha256/{hexid}"
    assert data.read(loaded) is not None, f"{image} is not in the guest's data-root"
    # Left: the fix applied, and the story's other role ran on through it all.
    assert events(overlord, "role-applied", "1.0.1")
    assert role_versions(overlord)[roles.NAME] == ("1.0.0", "healthy")


def probe_offset(card_image: Path, label: str) -> int:
    """Where the verity probe's bytes start in partition ``label`` of the card."""
    part = partition(card_image, label=label)
    with card_image.open("rb") as disk:
        disk.seek(part.start)
        data = disk.read(part.size)
    found = data.find(images.verity_probe()[:4096])
    assert found >= 0, f"the verity probe is not on {label}"
    return found


def test_v3_failing_its_health_check_falls_back_to_v2(product: Product, board: SimulatedPi) -> None:
    """3.0.0's trial fails a required health check and falls back. While it runs, the operator
    rolls out 4.0.0 instead: the fallback boot reports the rollback and takes 4.0.0, rather
    than a second bounded attempt of 3.0.0 (max_trial_attempts), which would cost the story a
    install boot and a trial that prove nothing new.

    Issue 17's scenario 3 with the updater's own check bypassed, in the same trial: after the
    updater verified slot A and asked for the trial, one byte of a file the trial boot reads
    (the verity probe) is changed on the card. The trial's root refuses that block, and the
    rollback names dm-verity beside the failing check."""
    overlord = product.overlord
    overlord.abort_unfinished_rollouts()
    overlord.rollout("to-3", "3.0.0")
    rolled_back = shows(overlord, "rollback", "3.0.0", booted_slot="b")
    trial_request = TRIAL_REQUEST.format(slot="a", version="3.0.0")
    records: list[BootRecord] = []
    for _ in range(5):
        records.append(timed(board.boot(power_cut=rolled_back)))
        if records[-1].end is End.POWER_CUT:
            break
        if not records[-1].tryboot and trial_request in board.console(records[-1]):
            # Written, read back, verified: the flip comes after every check of the updater.
            flip_byte(board.disk, "system_a", probe_offset(board.disk, "system_a") + 4096)
        if records[-1].tryboot:  # the trial ended; the board is off until the next boot
            overlord.abort_unfinished_rollouts()
            overlord.rollout("to-4", "4.0.0")
    else:
        pytest.fail(f"{rolled_back.describe()} did not happen in 5 boots:\n{board.decisions()}")

    trials = [r for r in records if r.tryboot]
    assert [(r.partition, r.end) for r in trials] == [(SLOT_A_BOOT, End.REBOOT)]
    assert (records[-1].partition, records[-1].tryboot) == (SLOT_B_BOOT, False)
    (rollback,) = events(overlord, "rollback", "3.0.0")
    print(f"3.0.0 rolled back: {rollback['reason']}")
    assert "health check failed" in rollback["reason"]
    assert "50-e2e-broken" in rollback["reason"]
    assert "dm-verity root: a block of the root did not verify" in rollback["reason"]
    assert events(overlord, "verity-corruption")
    device = only_device(overlord)
    assert (device["image_version"], device["committed_slot"]) == ("2.0.0", "b")
    assert autoboot_all(config_partition_intact(board)["autoboot.txt"]) == SLOT_B_BOOT


def test_v4_signed_by_another_key_is_never_tried(product: Product, board: SimulatedPi) -> None:
    """Issue 17's scenario 4: 4.0.0's boot.img is signed by a key the running image does not
    list among its trusted boot keys (the board's bootloader would refuse it too). The updater
    checks boot.sig's signature before the trial, refuses it and reports why; the board never
    tries slot A."""
    overlord = product.overlord
    # The v3 scenario rolled 4.0.0 out during v3's trial: the fallback boot began its install
    # into slot A, which this boot resumes until the updater's check refuses it.
    refused = shows(overlord, "install-failed", "4.0.0")
    records = boot_until(board, refused, max_boots=2)

    assert not any(r.tryboot for r in records), board.decisions()
    assert (records[-1].partition, records[-1].end) == (SLOT_B_BOOT, End.POWER_CUT)
    (event, *_) = events(overlord, "install-failed", "4.0.0")
    print(f"4.0.0 refused before the trial: {event['reason']}")
    assert "boot_a: boot.sig is not signed by a key this device trusts" in event["reason"]
    assert autoboot_all(config_partition_intact(board)["autoboot.txt"]) == SLOT_B_BOOT
    device = only_device(overlord)
    assert (device["image_version"], device["committed_slot"]) == ("2.0.0", "b")


def test_v5_whose_boot_img_is_swapped_on_the_card_falls_back_while_the_overlord_is_down(
    product: Product, board: SimulatedPi
) -> None:
    """Issue 17's scenario 4 with the updater's own check bypassed: 5.0.0 is written and
    checked, and after the trial request its boot partition is swapped on the card for
    4.0.0's (signed by another key). The bootloader refuses the trial slot before anything
    runs, the tryboot flag is lost and the committed slot boots again."""
    overlord = product.overlord
    overlord.abort_unfinished_rollouts()
    overlord.rollout("to-5", "5.0.0")
    wanted = TRIAL_REQUEST.format(slot="a", version="5.0.0")
    install = None
    for _ in range(2):
        record = timed(board.boot())
        if wanted in board.console(record):
            install = record
            break
    assert install is not None, board.decisions()
    assert (install.partition, install.tryboot, install.end) == (SLOT_B_BOOT, False, End.REBOOT)
    # Written, read back, signature checked: the swap comes after every check of the updater.
    replace_partition(board.disk, "boot_a", product.releases["4.0.0"].disk)

    overlord.stop()  # down from the trial reboot on
    trial = timed(board.boot())
    assert (trial.partition, trial.tryboot, trial.end) == (SLOT_A_BOOT, True, End.UNBOOTABLE)
    assert "secure boot refused boot.img" in trial.detail, trial.detail
    assert "does not verify against the key" in trial.detail, trial.detail

    # The fallback boot runs v2 without its Overlord; it comes back once the agent has said
    # so on the console, and the boot ends when the Overlord has the rollback.
    def back_and_told() -> bool:
        if not overlord.running:
            if OFFLINE not in board.live_console():
                return False
            overlord.start()
            product.overlord_back = datetime.now(UTC)
        return bool(events(overlord, "rollback", "5.0.0"))

    fallback = timed(
        board.boot(power_cut=PowerCut(when=back_and_told, label="the Overlord got the rollback"))
    )
    assert (fallback.partition, fallback.tryboot, fallback.end) == (
        SLOT_B_BOOT,
        False,
        End.POWER_CUT,
    )
    (rollback,) = events(overlord, "rollback", "5.0.0")
    assert "did not start or ended early" in rollback["reason"]
    assert "the bootloader refused the slot's signed boot.img" in rollback["reason"]
    device = only_device(overlord)
    assert (device["image_version"], device["booted_slot"]) == ("2.0.0", "b")


def test_telemetry_queued_while_the_overlord_was_down_arrives_in_order(
    product: Product, board: SimulatedPi
) -> None:
    """What the device queued on /data while the Overlord was down (the rollback of 5.0.0 and
    whatever else it recorded) arrives once it is back, oldest first, nothing dropped."""
    overlord, back = product.overlord, product.overlord_back
    assert back is not None, "the Overlord never came back"
    every = sorted(events(overlord), key=lambda e: e["seq"])
    queued = [e for e in every if at(e["time"]) < back <= at(e["received_at"])]
    kinds = [e["kind"] for e in queued]
    print(f"queued while the Overlord was down: {kinds}")
    assert kinds and kinds[-1] == "rollback", kinds
    assert [e["version"] for e in queued if e["kind"] == "rollback"] == ["5.0.0"]
    # In order: the device's sequence numbers and its clock agree, oldest first.
    assert [at(e["time"]) for e in every] == sorted(at(e["time"]) for e in every)
    assert only_device(overlord)["dropped_events"] == 0


def at(stamp: str) -> datetime:
    moment = datetime.fromisoformat(stamp)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
