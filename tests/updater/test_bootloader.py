"""The EEPROM bootloader: reading it strictly, the minimum versions, and updates staged,
applied and verified on a simulated board (tests/updater/eeprom_board.py) whose fake
vcgencmd, rpi-eeprom-config and rpi-eeprom-ab run as real processes on PATH."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from fleetcore import eeprom
from fleetcore.boards import Board
from fleetcore.bootloader import MINIMUMS, TrybootSupport, tryboot_support
from fleetcore.release import BOOTLOADER_FILES, Hardware, bootloader_target
from fleetcore.version import Version
from fleetcore.wire import BootloaderReport, EventKind, Heartbeat, UpdateState
from signing.bootloader import publish_bootloader
from signing.client import ReleaseClient
from signing.errors import RepositoryError
from signing.repository import add_targets
from signing.targets import TargetCustom, TargetKind, TargetSpec, payload_digest
from tests.updater.device import SimDevice
from tests.updater.eeprom_board import EepromBoard, eeprom_image, eeprom_sig
from tests.updater.releases import ReleaseRepo
from tests.updater.servers import FleetServer
from updater.bootloader import settings, version
from updater.bootloader.fetch import install_from
from updater.bootloader.pending import BootloaderState, BootloaderStore, Method, Pending
from updater.bootloader.update import STAGED, BootloaderRelease, BootloaderUpdater
from updater.engine import EngineResult
from updater.errors import BootloaderError
from updater.queue import EventQueue
from updater.sources import DirectoryFetcher

FIXTURES = Path(__file__).parent / "fixtures" / "bootloader"
PI4_2022_11_25 = 1669373653
PI4_2023_05_11 = 1683786363
PI4_2024_04_15 = 1713186734
PI5_2024_04_17 = 1713358463
PI5_2026_05_13 = 1778671631


# -- reading: known-good and known-bad output -------------------------------------------------


@pytest.mark.parametrize(
    ("name", "timestamp"),
    [
        ("version-pi4-2023-05-11.txt", PI4_2023_05_11),
        ("version-pi5-2024-04-17.txt", PI5_2024_04_17),
        ("version-pi4-2022-11-25.txt", PI4_2022_11_25),
    ],
)
def test_version_output_is_read(name: str, timestamp: int) -> None:
    parsed = version.parse((FIXTURES / name).read_bytes())
    assert parsed.timestamp == timestamp
    assert parsed.git_hash is not None and len(parsed.git_hash) == 40


def test_version_fields_are_kept() -> None:
    parsed = version.parse((FIXTURES / "version-pi4-2023-05-11.txt").read_bytes())
    assert (parsed.update_time, parsed.capabilities) == (1684238567, 0x7F)


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("bad-version-old-date-format.txt", "first line is not a date"),
        ("bad-version-date-disagrees.txt", "disagrees with its timestamp"),
        ("bad-version-unknown-line.txt", "unknown line"),
        ("bad-version-twice.txt", "timestamp twice"),
        ("bad-version-impossible-date.txt", "impossible"),
    ],
)
def test_bad_version_output_is_one_clear_error(name: str, error: str) -> None:
    with pytest.raises(BootloaderError, match=error) as caught:
        version.parse((FIXTURES / name).read_bytes())
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("output", "error"),
    [
        (b"", "printed nothing"),
        (b"2023/05/11 06:26:03\n" + b"x" * 5000, "more than 4096 bytes"),
        ("2023/05/11 06:26:03\nversion é\n".encode(), "non-ASCII"),
        (b"2023/05/11 06:26:03\ntimestamp 99999999999\n", "malformed timestamp"),
    ],
)
def test_hostile_version_output_is_refused(output: bytes, error: str) -> None:
    with pytest.raises(BootloaderError, match=error):
        version.parse(output)


def test_timestamp_zero_is_the_first_production_bootloader() -> None:
    parsed = version.parse(b"2019/05/10 18:40:36\ntimestamp 0\n")
    assert parsed.timestamp == version.FIRST_VERSION


@pytest.mark.parametrize(
    ("name", "boot_order", "secure"),
    [
        ("config-pi4-default.txt", "0xf41", False),
        ("config-pi5-secure.txt", "0xf461", True),
        ("config-pi4-conditional.txt", "0xf41", False),
    ],
)
def test_settings_are_read(name: str, boot_order: str, secure: bool) -> None:
    parsed = settings.parse((FIXTURES / name).read_bytes())
    assert (parsed.boot_order, parsed.secure_boot) == (boot_order, secure)


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("bad-config-not-a-setting.txt", "line 3 is not a setting"),
        ("bad-config-boot-order.txt", "BOOT_ORDER=0x1234567890"),
        ("bad-config-signed-boot.txt", "SIGNED_BOOT=yes is neither 0 nor 1"),
    ],
)
def test_bad_settings_are_one_clear_error(name: str, error: str) -> None:
    with pytest.raises(BootloaderError, match=error):
        settings.parse((FIXTURES / name).read_bytes())


# -- minimum versions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "timestamp", "secure", "verdict"),
    [
        (Hardware.PI4, PI4_2022_11_25, False, TrybootSupport.BELOW_MINIMUM),
        (Hardware.PI4, PI4_2023_05_11, False, TrybootSupport.SUPPORTED),
        (Hardware.PI4, PI4_2023_05_11, True, TrybootSupport.BELOW_MINIMUM),
        (Hardware.PI4, PI4_2024_04_15, True, TrybootSupport.SUPPORTED),
        (Hardware.PI5, 1694601426, False, TrybootSupport.SUPPORTED),
        (Hardware.PI5, PI4_2024_04_15, True, TrybootSupport.BELOW_MINIMUM),
        (Hardware.PI5, PI5_2024_04_17, True, TrybootSupport.SUPPORTED),
        (Hardware.PI4, None, False, TrybootSupport.UNKNOWN),
        (Hardware.QEMU, PI4_2024_04_15, False, TrybootSupport.UNKNOWN),
    ],
)
def test_tryboot_verdict(
    family: Hardware, timestamp: int | None, secure: bool, verdict: TrybootSupport
) -> None:
    assert tryboot_support(family, timestamp, secure_boot=secure) is verdict


def test_minimums_are_the_release_notes_timestamps() -> None:
    """versions.txt in raspberrypi/rpi-eeprom maps each image name to its BUILD_TIMESTAMP."""
    pi4, pi5 = MINIMUMS[Hardware.PI4], MINIMUMS[Hardware.PI5]
    assert (pi4.tryboot_ab.timestamp, pi4.secure_boot.timestamp) == (PI4_2023_05_11, PI4_2024_04_15)
    assert pi5.secure_boot.timestamp == PI5_2024_04_17
    assert pi4.ab_eeprom is None and pi5.ab_eeprom is not None
    assert pi5.ab_eeprom.timestamp == PI5_2026_05_13


# -- updates on a simulated board -----------------------------------------------------------


class Device:
    """An EEPROM board, its config partition, /data and a boot id that changes at power-on."""

    def __init__(
        self,
        base: Path,
        monkeypatch: pytest.MonkeyPatch,
        family: Hardware,
        timestamp: int,
        board_kind: Board = Board.PI4,
        **board: object,
    ) -> None:
        self.board = EepromBoard(base, family, timestamp, **board)  # type: ignore[arg-type]
        monkeypatch.setenv("PATH", str(self.board.bin), prepend=os.pathsep)
        self.config_partition = base / "config"
        self.config_partition.mkdir()
        (self.config_partition / "autoboot.txt").write_text("[all]\ntryboot_a_b=1\n")
        self.boots = itertools.count()
        self.boot = next(self.boots)
        self.reboots = 0
        self.os_state = UpdateState.COMMITTED
        self.committed_sig: bytes | None = None  # the committed slot's boot.sig
        self.events = EventQueue(base / "queue", max_items=100)
        self.store = BootloaderStore(base / "data" / "bootloader.json")
        self.family = family
        self.board_kind = board_kind
        self.base = base
        self.updater = self.start_agent()

    def start_agent(self) -> BootloaderUpdater:
        return BootloaderUpdater(
            family=self.family,
            board=self.board_kind,
            config_partition=self.config_partition,
            store=self.store,
            events=self.events,
            work_dir=self.base / "data",
            boot_id=lambda: f"boot-{self.boot}",
            reboot=self._reboot,
            os_state=lambda: self.os_state,
            committed_boot_sig=lambda: self.committed_sig,
        )

    def _reboot(self) -> None:
        self.reboots += 1

    def power_on(self) -> None:
        self.board.power_on(self.config_partition)
        self.boot = next(self.boots)
        self.updater = self.start_agent()

    def kinds(self) -> list[EventKind]:
        return [event.kind for event in self.events.pending()]

    def release(self, timestamp: int, *, family: Hardware | None = None, ab: bool = False):
        data = eeprom_image(family or self.family, timestamp, ab=ab)
        return BootloaderRelease(
            family=family or self.family, image=data, sig=eeprom_sig(data), recovery=b"recovery"
        )


@pytest.fixture
def pi4(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Device:
    return Device(tmp_path, monkeypatch, Hardware.PI4, PI4_2023_05_11)


def test_pi4_update_is_staged_on_the_config_partition_and_verified(pi4: Device) -> None:
    assert pi4.updater.install(pi4.release(PI4_2024_04_15))
    assert pi4.reboots == 1
    assert sorted(p.name for p in pi4.config_partition.iterdir()) == sorted(
        ["autoboot.txt", *STAGED]
    )
    pending = pi4.store.load().pending
    assert pending is not None and pending.method is Method.RECOVERY
    assert pi4.updater.report().pending == PI4_2024_04_15
    pi4.power_on()
    assert pi4.board.running() == PI4_2024_04_15
    assert not pi4.updater.resume()
    assert [p.name for p in pi4.config_partition.iterdir()] == ["autoboot.txt"]
    assert pi4.store.load().pending is None
    assert pi4.kinds() == [EventKind.BOOTLOADER_STAGED, EventKind.BOOTLOADER_UPDATED]
    report = pi4.updater.report()
    assert (report.version, report.tryboot_ab, report.pending) == (
        PI4_2024_04_15,
        TrybootSupport.SUPPORTED,
        None,
    )


def test_a_restarted_agent_reboots_again_before_verifying(pi4: Device) -> None:
    pi4.updater.install(pi4.release(PI4_2024_04_15))
    pi4.updater = pi4.start_agent()  # the agent restarted; the device did not reboot
    assert pi4.updater.resume()
    assert pi4.reboots == 2
    assert pi4.store.load().pending is not None


def test_the_running_bootloader_is_not_installed_again(pi4: Device) -> None:
    assert not pi4.updater.install(pi4.release(PI4_2023_05_11))
    assert pi4.reboots == 0 and pi4.kinds() == [EventKind.BOOTLOADER_UPDATED]  # for its rollout


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (
            {"timestamp": PI4_2022_11_25},
            "older than the installed 2023-05-11 06:26:03; .* never downgraded",
        ),
        ({"family": Hardware.PI5}, "release is for pi5, this is pi4"),
        ({"sig": b"0" * 64 + b"\n"}, "pieeprom.sig does not match"),
        ({"sig": b"unsigned"}, "pieeprom.sig does not start"),
        ({"image": b"\0" * 2 * 1024 * 1024}, "the pi5 flash size"),
        ({"recovery": b""}, "recovery.bin is empty"),
    ],
)
def test_bad_releases_are_refused_and_reported(pi4: Device, change: dict, error: str) -> None:
    base = pi4.release(change.pop("timestamp", PI4_2024_04_15))
    fields = {**base.__dict__, **change}
    with pytest.raises(BootloaderError, match=error):
        pi4.updater.install(BootloaderRelease(**fields))
    assert [p.name for p in pi4.config_partition.iterdir()] == ["autoboot.txt"]
    assert pi4.store.load().pending is None and pi4.reboots == 0
    events = pi4.events.pending()
    assert [e.kind for e in events] == [EventKind.BOOTLOADER_FAILED]
    assert events[0].reason is not None and "\n" not in events[0].reason


def test_a_pi5_image_for_a_pi4_board_is_refused_by_its_size(pi4: Device) -> None:
    data = eeprom_image(Hardware.PI5, PI4_2024_04_15)
    release = BootloaderRelease(Hardware.PI4, data, eeprom_sig(data), b"recovery")
    with pytest.raises(BootloaderError, match="is 2097152 bytes"):
        pi4.updater.install(release)


def test_no_bootloader_update_during_an_os_update(pi4: Device) -> None:
    for state in (UpdateState.INSTALLING, UpdateState.TRIAL, UpdateState.COMMITTING):
        pi4.os_state = state
        with pytest.raises(BootloaderError, match=f"OS update is under way \\({state.value}\\)"):
            pi4.updater.install(pi4.release(PI4_2024_04_15))
    assert pi4.store.load().pending is None
    pi4.os_state = UpdateState.ROLLED_BACK
    assert pi4.updater.install(pi4.release(PI4_2024_04_15))


def test_a_second_update_waits_for_the_staged_one(pi4: Device) -> None:
    pi4.updater.install(pi4.release(PI4_2024_04_15))
    with pytest.raises(BootloaderError, match="already staged"):
        pi4.updater.install(pi4.release(PI4_2024_04_15 + 1))


def test_a_failed_flash_leaves_the_old_bootloader_and_is_not_retried(pi4: Device) -> None:
    pi4.board.flash_fails = True
    pi4.updater.install(pi4.release(PI4_2024_04_15))
    pi4.power_on()
    pi4.updater.resume()
    assert pi4.board.running() == PI4_2023_05_11
    assert [p.name for p in pi4.config_partition.iterdir()] == ["autoboot.txt"]
    failed = pi4.events.pending()[-1]
    assert failed.kind is EventKind.BOOTLOADER_FAILED
    assert failed.reason is not None and "bootloader is 2023-05-11 06:26:03" in failed.reason
    with pytest.raises(BootloaderError, match="did not take on this device before"):
        pi4.updater.install(pi4.release(PI4_2024_04_15))


def test_an_old_bootloader_is_reported_below_the_minimum_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = Device(tmp_path, monkeypatch, Hardware.PI4, PI4_2022_11_25)
    report = device.updater.report()
    assert (report.tryboot_ab, report.minimum, report.boot_order, report.secure_boot) == (
        TrybootSupport.BELOW_MINIMUM,
        PI4_2023_05_11,
        "0xf41",
        False,
    )
    device.updater.report()
    below = device.events.pending()
    assert [e.kind for e in below] == [EventKind.BOOTLOADER_BELOW_MINIMUM]
    assert below[0].data == {"bootloader": PI4_2022_11_25, "minimum": PI4_2023_05_11}


def test_secure_boot_raises_the_minimum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = (FIXTURES / "config-pi5-secure.txt").read_text()
    device = Device(tmp_path, monkeypatch, Hardware.PI4, PI4_2023_05_11, config=config)
    report = device.updater.report()
    assert (report.secure_boot, report.tryboot_ab, report.minimum) == (
        True,
        TrybootSupport.BELOW_MINIMUM,
        PI4_2024_04_15,
    )


def test_hostile_tool_output_is_reported_not_raised(pi4: Device) -> None:
    pi4.board.set_output(b"2023/05/11 06:26:03\n$(reboot)\n")
    report = pi4.updater.report()
    assert report.version is None and report.tryboot_ab is TrybootSupport.UNKNOWN
    assert report.error is not None and "unknown line" in report.error
    with pytest.raises(BootloaderError, match="unknown line"):
        pi4.updater.install(pi4.release(PI4_2024_04_15))


def test_missing_tools_are_reported(pi4: Device, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    report = pi4.updater.report()
    assert report.error is not None and "vcgencmd not found" in report.error


def test_the_report_fits_an_old_and_a_new_heartbeat(pi4: Device) -> None:
    report = pi4.updater.report()
    fields = {
        "image_version": "1.0.0",
        "booted_slot": "a",
        "committed_slot": "a",
        "update_state": "idle",
        "health": "healthy",
        "free_data_bytes": 1,
        "uptime_s": 1.0,
    }
    assert Heartbeat.model_validate(fields).bootloader is None  # an older agent's heartbeat
    beat = Heartbeat.model_validate({**fields, "bootloader": report.model_dump(mode="json")})
    assert beat.bootloader == report
    with pytest.raises(ValueError, match="extra"):
        BootloaderReport.model_validate({"version": 1, "surprise": 1})


def test_pi5_with_ab_eeprom_flashes_the_other_partition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = Device(
        tmp_path, monkeypatch, Hardware.PI5, PI5_2026_05_13, board_kind=Board.PI5, ab=True
    )
    assert device.updater.install(device.release(PI5_2026_05_13 + 86400, ab=True))
    assert [p.name for p in device.config_partition.iterdir()] == ["autoboot.txt"]
    pending = device.store.load().pending
    assert pending is not None and pending.method is Method.AB
    assert device.board.running() == PI5_2026_05_13  # the running partition is untouched
    device.power_on()
    device.updater.resume()
    assert device.board.running() == PI5_2026_05_13 + 86400
    assert device.kinds()[-1] is EventKind.BOOTLOADER_UPDATED


def test_pi5_without_ab_eeprom_uses_recovery_bin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = Device(tmp_path, monkeypatch, Hardware.PI5, PI5_2024_04_17, board_kind=Board.PI5)
    assert device.updater.install(device.release(PI5_2026_05_13, ab=True))
    pending = device.store.load().pending
    assert pending is not None and pending.method is Method.RECOVERY
    device.power_on()
    device.updater.resume()
    assert device.board.running() == PI5_2026_05_13


def test_an_os_update_waits_for_a_staged_bootloader_update(
    device: SimDevice, server: FleetServer
) -> None:
    """The other half of the serialisation: the OS engine starts nothing while the
    bootloader update is staged, and starts once it is verified."""
    store = BootloaderStore(device.roots.bootloader_file)
    store.save(
        BootloaderState(
            pending=Pending(
                target=PI4_2024_04_15, previous=PI4_2023_05_11, method=Method.RECOVERY, boot_id="b"
            )
        )
    )
    engine = device.engine()
    assert engine.start(Version("2.0.0"), server.tuf_url) is EngineResult.WAITING
    assert engine.store.load().state is UpdateState.IDLE
    store.save(BootloaderState())
    assert engine.start(Version("2.0.0"), server.tuf_url) is EngineResult.REBOOTING


# -- bootloader releases through TUF ------------------------------------------------------------


@pytest.fixture
def signed(tmp_path: Path) -> ReleaseRepo:
    return ReleaseRepo(tmp_path / "repo")


def publish(
    repo: ReleaseRepo, family: Hardware, timestamp: int, *, min_updater: Version | None = None
) -> Version:
    image_path = repo.base / f"pieeprom-{timestamp}.bin"
    image_path.write_bytes(eeprom_image(family, timestamp))
    recovery = repo.base / "recovery.bin"
    recovery.write_bytes(b"recovery.bin of the same rpi-eeprom release")
    return publish_bootloader(
        repo.path,
        repo.keys,
        family=family,
        image_path=image_path,
        recovery_path=recovery,
        min_updater_version=min_updater,
    )


def client_of(repo: ReleaseRepo, base: Path) -> ReleaseClient:
    return ReleaseClient(
        metadata_dir=base / "tuf",
        base_url="dir:",
        bootstrap_root=repo.root_json,
        fetcher=DirectoryFetcher(repo.path),
    )


def test_a_signed_release_moves_the_device_from_x_to_y(pi4: Device, signed: ReleaseRepo) -> None:
    version = publish(signed, Hardware.PI4, PI4_2024_04_15)
    assert version == Version("2024.4.15.47534")
    client = client_of(signed, pi4.base)
    assert install_from(pi4.updater, client, version, updater_version=Version("1.0.0"))
    assert (pi4.config_partition / "pieeprom.sig").read_bytes() == eeprom.sig_for(
        eeprom.load_image(eeprom_image(Hardware.PI4, PI4_2024_04_15), Hardware.PI4)
    ).dump()
    pi4.power_on()
    pi4.updater.resume()
    assert pi4.board.running() == PI4_2024_04_15
    assert pi4.kinds()[-1] is EventKind.BOOTLOADER_UPDATED
    assert [e.version for e in pi4.events.pending()] == [version, version]  # its rollout's


@pytest.mark.parametrize(
    ("publish_as", "ask", "updater", "error"),
    [
        (Hardware.PI5, Hardware.PI4, "1.0.0", "no signed target named 'bootloader/pi4/"),
        (Hardware.PI4, Hardware.PI4, "0.9.0", "needs updater 1.0.0 or later, this is 0.9.0"),
    ],
)
def test_unsuitable_signed_releases_are_refused_and_reported(
    pi4: Device,
    signed: ReleaseRepo,
    publish_as: Hardware,
    ask: Hardware,
    updater: str,
    error: str,
) -> None:
    stamp = PI4_2024_04_15
    version = publish(signed, publish_as, stamp, min_updater=Version("1.0.0"))
    with pytest.raises(BootloaderError, match=error):
        install_from(
            pi4.updater, client_of(signed, pi4.base), version, updater_version=Version(updater)
        )
    assert pi4.kinds() == [EventKind.BOOTLOADER_FAILED]
    assert pi4.store.load().pending is None


def test_a_tampered_target_is_refused(pi4: Device, signed: ReleaseRepo) -> None:
    version = publish(signed, Hardware.PI4, PI4_2024_04_15)
    stored = next(
        (signed.path / "targets" / "bootloader" / "pi4" / str(version)).glob("*.pieeprom.bin")
    )
    data = bytearray(stored.read_bytes())
    data[100] ^= 1
    stored.write_bytes(bytes(data))
    with pytest.raises(BootloaderError, match="bootloader 2024.4.15.47534: .*pieeprom.bin"):
        install_from(
            pi4.updater, client_of(signed, pi4.base), version, updater_version=Version("1.0.0")
        )
    assert pi4.kinds() == [EventKind.BOOTLOADER_FAILED]
    assert [p.name for p in pi4.config_partition.iterdir()] == ["autoboot.txt"]


def test_an_older_signed_release_is_refused(pi4: Device, signed: ReleaseRepo) -> None:
    version = publish(signed, Hardware.PI4, PI4_2022_11_25)
    with pytest.raises(BootloaderError, match="never downgraded"):
        install_from(
            pi4.updater, client_of(signed, pi4.base), version, updater_version=Version("1.0.0")
        )
    assert pi4.kinds() == [EventKind.BOOTLOADER_FAILED]


def test_fleet_sign_refuses_an_image_for_another_board(signed: ReleaseRepo) -> None:
    image_path = signed.base / "pieeprom.bin"
    image_path.write_bytes(eeprom_image(Hardware.PI5, PI5_2024_04_17))
    (signed.base / "recovery.bin").write_bytes(b"r")
    with pytest.raises(RepositoryError, match="the pi5 flash size"):
        publish_bootloader(
            signed.path,
            signed.keys,
            family=Hardware.PI4,
            image_path=image_path,
            recovery_path=signed.base / "recovery.bin",
        )


def test_a_cm4_is_refused_with_the_way_to_update_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = Device(tmp_path, monkeypatch, Hardware.PI4, PI4_2023_05_11, board_kind=Board.CM4)
    with pytest.raises(BootloaderError, match="CM4's boot ROM does not load recovery.bin"):
        device.updater.install(device.release(PI4_2024_04_15))
    assert device.kinds() == [EventKind.BOOTLOADER_FAILED] and device.reboots == 0


def test_a_signed_version_that_is_not_the_images_build_is_refused(
    pi4: Device, signed: ReleaseRepo
) -> None:
    """Metadata and bytes disagree: signed as 2024.4.15.1, built at 2024-04-15 13:12:14."""
    lie = Version("2024.4.15.1")
    data = eeprom_image(Hardware.PI4, PI4_2024_04_15)
    specs = []
    for name, content in zip(BOOTLOADER_FILES, (data, eeprom_sig(data), b"recovery"), strict=True):
        path = signed.base / name
        path.write_bytes(content)
        size, sha256 = payload_digest(path)
        custom = TargetCustom(
            kind=TargetKind.BOOTLOADER,
            version=lie,
            hardware=(Hardware.PI4,),
            uncompressed_size=size,
            uncompressed_sha256=sha256,
        )
        specs.append(TargetSpec(path, bootloader_target(Hardware.PI4, lie, name), custom))
    add_targets(signed.path, signed.keys, specs)
    with pytest.raises(BootloaderError, match="BUILD_TIMESTAMP 1713186734 is not its signed"):
        install_from(
            pi4.updater, client_of(signed, pi4.base), lie, updater_version=Version("1.0.0")
        )
    assert pi4.kinds() == [EventKind.BOOTLOADER_FAILED]
