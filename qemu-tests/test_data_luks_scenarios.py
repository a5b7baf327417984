"""Issue 18's encrypted-data scenarios on the real image (ADR 0076): v1 assembled with
``--encrypt-data``, flashed with an enrolment token and a Wi-Fi key, booted on simulated Pis
whose firmware holds a device secret the guest never sees (``harness.fwcrypto`` behind a
virtio-serial port).

One card's story, in file order, shares its boots: board A formats and enrols (1), the raw
card holds neither secret (3), the card survives a reboot (1), then moves to board B with
another secret (4). Scenario 2 cuts the power of a fresh card between the LUKS2 header and the
filesystem, on a board that plays a Pi 4: no AES instructions, so the volume is Adiantum
(QEMU's arm64 CPU models all have AES; the board says so on the kernel command line, as a Pi's
firmware appends its own arguments). Board A's CPU has AES: AES-XTS.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness.board import Deadlines, SimulatedPi
from harness.disk import partition
from harness.fwcrypto import SocketFirmware
from harness.qemu import End, MachineSpec, PowerCut, loopback_service
from product import images, tool
from product.overlord import Overlord
from product.signing import Repository

from fleetcore.run import run, run_text

pytestmark = [pytest.mark.qemu, pytest.mark.timeout(3600)]

HEALTHY_MARKER = "Welcome to "
DEADLINES = Deadlines(watchdog=300.0, session=900.0)
SECRET_A = bytes(range(32))
SECRET_B = bytes(range(32, 64))
WIFI_PSK = "luks-e2e-wifi-passphrase-4711"
AGENT = "fleet-updater["
FORMATTED = "fleet-data-luks: formatting"
HEADER_WRITTEN = "fleet-data-luks: LUKS2 header written, making the filesystem"
CANNOT_OPEN = "cannot open /data:"
PI4_NO_AES = ("fleet.data.cipher=adiantum",)
LUKS2_HEADER = 16 << 20


@dataclass
class Encrypted:
    session: Path
    overlord: Overlord
    disk: Path
    token: str


@pytest.fixture(scope="module")
def encrypted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Encrypted]:
    workdir = images.workdir(tmp_path_factory)
    repo = Repository.init(workdir)
    session = workdir / "session"
    session.mkdir()
    overlord = Overlord(session, repo.repo, repo.keys)
    rootfs = images.build_rootfs(workdir, repo.root_json)
    release = images.assemble(rootfs, workdir, "1.0.0", extra=("--encrypt-data",))
    repo.add_release(release.release_dir, "1.0.0")
    overlord.start()
    try:
        yield Encrypted(session, overlord, release.disk, overlord.token("enrollment"))
    finally:
        overlord.stop()


def flash(enc: Encrypted, name: str) -> Path:
    config = enc.session / f"{name}.yaml"
    config.write_text(
        f"overlord_url: http://10.0.2.100/\nenrollment_token: {enc.token}\n"
        f"hostname: luks-e2e\nwifi:\n  ssid: e2e\n  psk: {WIFI_PSK}\n"
    )
    out = enc.session / f"{name}.img"
    run([tool("fleet-image"), "flash", enc.disk, "--out", out, "--config", config], timeout=900)
    return out


def board(
    enc: Encrypted,
    card: Path,
    name: str,
    firmware: SocketFirmware,
    kernel_args: tuple[str, ...] = (),
) -> SimulatedPi:
    return SimulatedPi(
        card,
        enc.session / name,
        healthy_marker=HEALTHY_MARKER,
        deadlines=DEADLINES,
        spec=MachineSpec(
            extra_args=loopback_service(enc.overlord.port) + firmware.qemu_args(),
            kernel_args=kernel_args,
        ),
    )


def luks_dump(card: Path, scratch: Path) -> str:
    """``cryptsetup luksDump`` of the card's data partition, read on the host."""
    data = partition(card, label="data")
    header = scratch / f"{card.stem}-luks-header.img"
    with card.open("rb") as source:
        source.seek(data.start)
        header.write_bytes(source.read(LUKS2_HEADER))
    return run_text(["cryptsetup", "luksDump", header])


def enrolled(overlord: Overlord) -> PowerCut:
    """Cut once the Overlord has the device's "enrolled" event, which the agent queues after
    the token and Wi-Fi key left the FAT partition (``Agent.enroll``). The device row alone
    appears at registration, before that move: a cut then leaves the secrets on the card
    until the agent's next cycle, which the second boot (cut as the agent starts) never runs.
    """

    def seen() -> bool:
        found = overlord.the_device()
        if found is None or found.get("image_version") != "1.0.0":
            return False
        return any(e["kind"] == "enrolled" for e in overlord.events(found["id"]))

    return PowerCut(when=seen, label="the Overlord shows the device enrolled on 1.0.0")


@pytest.fixture(scope="module")
def card_a(encrypted: Encrypted) -> Path:
    return flash(encrypted, "card-a")


def test_first_boot_formats_luks2_enrols_and_survives_a_reboot(encrypted, card_a):
    with closing(SocketFirmware(SECRET_A, encrypted.session / "a.sock")) as firmware:
        pi = board(encrypted, card_a, "board-a", firmware)
        first = pi.boot(power_cut=enrolled(encrypted.overlord))
        print(first.line())
        assert first.healthy, pi.decisions()
        assert FORMATTED in pi.console(first)
        assert "as LUKS2 with aes-xts" in pi.console(first)
        assert "fleet-data-luks: /dev/" in pi.console(first)  # "... formatted"

        second = pi.boot(power_cut=PowerCut(marker=AGENT))
        print(second.line())
        assert second.end is End.POWER_CUT, pi.decisions()
        assert FORMATTED not in pi.console(second)
        assert CANNOT_OPEN not in pi.console(second)
    assert len(encrypted.overlord.devices()) == 1
    assert "cipher: aes-xts-plain64" in luks_dump(card_a, encrypted.session)


def test_the_raw_card_holds_neither_the_token_nor_the_wifi_key(encrypted, card_a):
    raw = card_a.read_bytes()
    assert encrypted.token.encode() not in raw
    assert WIFI_PSK.encode() not in raw


def test_the_card_in_another_board_does_not_open_or_enrol(encrypted, card_a):
    before = encrypted.overlord.devices()
    with closing(SocketFirmware(SECRET_B, encrypted.session / "b.sock")) as firmware:
        pi = board(encrypted, card_a, "board-b", firmware)
        record = pi.boot(power_cut=PowerCut(marker="fleet-data: cannot open the encrypted"))
        print(record.line())
    console = pi.console(record)
    assert record.end is End.POWER_CUT, console
    assert "does not unlock with this device's secret" in console
    assert FORMATTED not in console
    assert encrypted.overlord.devices() == before


def test_a_power_cut_during_the_first_format_finishes_on_the_next_boot(encrypted):
    """On a Pi 4-like board: the volume finished after the cut is Adiantum and mounts."""
    card = flash(encrypted, "card-c")
    with closing(SocketFirmware(SECRET_A, encrypted.session / "c.sock")) as firmware:
        pi = board(encrypted, card, "board-c", firmware, kernel_args=PI4_NO_AES)
        cut = pi.boot(power_cut=PowerCut(marker=HEADER_WRITTEN))
        print(cut.line())
        assert cut.end is End.POWER_CUT, pi.decisions()

        again = pi.boot(power_cut=PowerCut(marker=AGENT))
        print(again.line())
    console = pi.console(again)
    assert again.end is End.POWER_CUT, console
    assert FORMATTED in console
    assert "as LUKS2 with adiantum" in console
    assert CANNOT_OPEN not in console  # opened, mounted: the agent started from /data
    dump = luks_dump(card, encrypted.session)
    assert "cipher: xchacha12,aes-adiantum-plain64" in dump
    assert re.search(r"^Label:\s+fleet-data$", dump, re.MULTILINE)  # finished, not -new
