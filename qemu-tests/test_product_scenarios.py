"""Issue 8's product scenarios: the real fleet image on a simulated Pi, an Overlord on the host.

One story on one card, in file order (a later scenario starts where the previous one left the
device); today: first boot enrols and reports v1. The image is built once per session
(`fleet-image build --backend debootstrap`, base rootfs from the content-keyed cache), each
version assembled from it and signed with `fleet-sign`. See product/README.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.board import BootRecord, Deadlines, SimulatedPi
from harness.disk import ext4_volume
from harness.qemu import End, MachineSpec, loopback_service
from product import card, images
from product.overlord import Overlord
from product.signing import Repository

pytestmark = [pytest.mark.qemu, pytest.mark.timeout(3600)]

# The board counts as healthy once the updater agent runs: its log reaches the serial console
# (a drop-in of the QEMU layer, see product/images.py) as "fleet-updater[PID]: ...". A full
# Debian boot under TCG took 31 s on an idle host and about 230 s to the agent's first line
# on this loaded 2-core host: the watchdog deadline must never reset a sound boot.
HEALTHY_MARKER = "fleet-updater["
# Every end of a boot but a guest reboot is a power cut, and the guest's writes to the FAT
# config partition (fleet.yaml after enrolment, autoboot.txt at commit) are only sure to be on
# the card after the kernel's 30 s writeback: a cut within that window has been seen to leave
# the config partition cross-linked (reported). So a running board is switched off at the
# session deadline, 60 s after the latest moment the watchdog allows the agent to start.
DEADLINES = Deadlines(watchdog=400.0, session=460.0)
SLOT_A_BOOT = 2


class Product:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.repo = Repository.init(workdir)
        self.overlord = Overlord(workdir, self.repo.repo, self.repo.keys)
        self.releases: dict[str, images.Release] = {}


@pytest.fixture(scope="session")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    workdir = tmp_path_factory.mktemp("product")
    made = Product(workdir)
    rootfs = images.build_rootfs(workdir, made.repo.root_json)
    for version in ("1.0.0",):
        release = images.assemble(rootfs, workdir, version)
        made.repo.add_release(release.release_dir)
        made.releases[version] = release
    made.overlord.start()
    try:
        yield made
    finally:
        made.overlord.stop()


@pytest.fixture(scope="session")
def board(product: Product) -> SimulatedPi:
    token = product.overlord.token("enrollment")
    disk = card.flash(product.releases["1.0.0"].disk, product.workdir / "card.img", token)
    return SimulatedPi(
        disk,
        product.workdir / "board",
        healthy_marker=HEALTHY_MARKER,
        deadlines=DEADLINES,
        spec=MachineSpec(extra_args=loopback_service(product.overlord.port)),
    )


def only_device(overlord: Overlord) -> dict[str, Any]:
    devices = overlord.devices()
    assert [d["hostname"] for d in devices] == [card.HOSTNAME], devices
    return devices[0]


def timed(record: BootRecord) -> BootRecord:
    print(record.line())
    return record


def test_first_boot_enrols_and_reports_v1(product: Product, board: SimulatedPi) -> None:
    record = timed(board.boot())

    assert (record.partition, record.tryboot) == (SLOT_A_BOOT, False)
    assert record.healthy
    assert record.end is End.STALLED, "ran until switched off"
    device = only_device(product.overlord)
    assert device["image_version"] == "1.0.0"
    assert device["booted_slot"] == "a"
    assert device["admin_status"] == "active"
    kinds = [e["kind"] for e in product.overlord.events(device["id"])]
    assert "enrolled" in kinds
    # Enrolment moved the secrets off the FAT partition onto /data.
    data = ext4_volume(board.disk, label="data")
    assert b"enrollment_token" in (data.read("/fleet/firstboot.yaml") or b"")
