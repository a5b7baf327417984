"""The board decides what a device installs: its family must be in a release's signed
``hardware``, boards without tryboot A/B neither enrol nor install, and the heartbeat says
which board it is. Device trees are the checked-in firmware files of tests/updater/fixtures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fleetcore.layout import Slot
from fleetcore.release import Hardware
from fleetcore.version import Version
from fleetcore.wire import EventKind, UpdateState
from tests.updater.agents import make_agent, setup_device
from tests.updater.conftest import v1_images, v2_images
from tests.updater.device import SimDevice
from tests.updater.releases import ReleaseRepo
from tests.updater.servers import FleetServer
from tests.updater.test_cli import cli
from updater.cli import main
from updater.engine import EngineResult
from updater.errors import BoardRefused

TREES = Path(__file__).parent / "fixtures" / "device-trees"


def on_board(base: Path, repo: ReleaseRepo, tree: str, **settings: object) -> SimDevice:
    """A v1 device whose firmware is the checked-in ``tree``; updater.yaml names no hardware."""
    device = SimDevice.create(
        base,
        images=v1_images(),
        version="1.0.0",
        root_json=repo.root_json,
        release_dir=repo.base / "build" / "release-1.0.0",
        settings={"hardware": None, **settings},
    )
    shutil.copytree(TREES / tree / "device-tree", device.roots.device_tree, dirs_exist_ok=True)
    return device


@pytest.fixture(scope="module")
def family_repo(tmp_path_factory: pytest.TempPathFactory) -> ReleaseRepo:
    """1.0.0 for every family, 2.0.0 for pi4 only, 3.0.0 for pi5 only."""
    repo = ReleaseRepo(tmp_path_factory.mktemp("family-repo"))
    every = (Hardware.PI4, Hardware.PI5, Hardware.QEMU)
    repo.publish("1.0.0", v1_images(), hardware=every)
    repo.publish("2.0.0", v2_images(), hardware=(Hardware.PI4,))
    repo.publish("3.0.0", v2_images(), hardware=(Hardware.PI5,))
    return repo


@pytest.fixture
def family_server(family_repo: ReleaseRepo):
    server = FleetServer(family_repo.path)
    yield server
    server.close()


@pytest.mark.parametrize(
    ("tree", "version", "release_for", "board_family"),
    [
        ("pi5-8gb-r1.0", "2.0.0", "pi4", "pi5"),
        ("pi500-8gb-r1.0", "2.0.0", "pi4", "pi5"),
        ("pi4b-4gb-r1.5", "3.0.0", "pi5", "pi4"),
        ("cm4-1gb-r1.0", "3.0.0", "pi5", "pi4"),
    ],
)
def test_a_release_for_another_family_is_refused_and_nothing_is_written(
    tmp_path, family_repo, family_server, tree, version, release_for, board_family
):
    device = on_board(tmp_path / "device", family_repo, tree)
    engine = device.engine()
    assert engine.hardware is Hardware(board_family)
    before = device.slot_sha256(Slot.B, next(iter(v2_images())), 4096)
    assert engine.start(Version(version), family_server.tuf_url) is EngineResult.IDLE
    state = engine.store.load()
    assert state.state is UpdateState.FAILED
    assert state.last_failure == (
        f"release {version} is built for {release_for}, this is {board_family}"
    )
    assert device.slot_sha256(Slot.B, next(iter(v2_images())), 4096) == before
    assert not family_server.chunk_requests  # refused from the signed metadata alone
    assert device.booted() == (Slot.A, False)


@pytest.mark.parametrize(
    ("tree", "version"), [("cm4-2gb-r1.1", "2.0.0"), ("cm5-4gb-r1.0", "3.0.0")]
)
def test_a_release_for_the_board_family_installs(
    tmp_path, family_repo, family_server, tree, version
):
    device = on_board(tmp_path / "device", family_repo, tree)
    assert device.engine().start(Version(version), family_server.tuf_url) is (
        EngineResult.REBOOTING
    )


@pytest.mark.parametrize("tree", ["zero2w-r1.0", "pi3bplus-r1.3", "bad-pi2-unknown-pi"])
def test_a_board_without_tryboot_ab_neither_enrols_nor_installs(
    tmp_path, family_repo, family_server, tree, caplog
):
    device = on_board(tmp_path / "device", family_repo, tree, hardware="pi4")
    setup_device(device, family_server)
    agent = make_agent(device)
    with pytest.raises(BoardRefused, match="^not enrolling: .*refuses to run A/B updates"):
        agent.cycle()
    assert family_server.registrations == []
    assert not device.roots.identity_file.exists()
    with pytest.raises(BoardRefused, match="refuses to run A/B updates"):
        device.engine().start(Version("2.0.0"), family_server.tuf_url)
    assert device.engine().store.load().state is UpdateState.IDLE
    assert "refuses to run A/B updates" in caplog.text


def test_the_daemon_keeps_running_and_logs_the_refusal(tmp_path, family_repo, family_server):
    """run_forever treats it as an expected failure: one error line per cycle, no crash loop."""
    device = on_board(tmp_path / "device", family_repo, "zero2w-r1.0")
    setup_device(device, family_server)
    agent = make_agent(device)
    sleeps: list[float] = []

    def sleep(seconds: float, _watchdog: float | None) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise SystemExit

    agent._sleep = sleep  # type: ignore[method-assign,assignment]
    with pytest.raises(SystemExit):
        agent.run_forever(watchdog_s=None, lock=tmp_path / "lock")
    assert sleeps == [agent.config.poll_max_s] * 2
    assert family_server.registrations == []


def test_an_enrolled_device_reports_a_refused_install(tmp_path, family_repo, family_server):
    """Enrolled on a Pi 4 image, updater.yaml later names pi4 on a Pi 5: the install is refused
    and the Overlord hears why in an install-failed event."""
    device = on_board(tmp_path / "device", family_repo, "pi5-8gb-r1.0")
    setup_device(device, family_server)
    make_agent(device).cycle()  # enrols as pi5
    assert family_server.registrations[0].hardware is Hardware.PI5
    device.roots.data_config.write_text(device.roots.data_config.read_text() + "hardware: pi4\n")
    agent = make_agent(device)
    agent.apply(Version("2.0.0"))
    agent.flush()
    failed = [e for e in family_server.events if e["kind"] == EventKind.INSTALL_FAILED.value]
    assert (
        "sets hardware: pi4, but this is a Raspberry Pi 5 Model B Rev 1.0" in (failed[-1]["reason"])
    )


@pytest.mark.parametrize(
    ("tree", "board", "model", "revision", "memory"),
    [
        ("pi4b-4gb-r1.5", "pi4", "Raspberry Pi 4 Model B Rev 1.5", "c03115", 4096),
        ("pi5-8gb-r1.0", "pi5", "Raspberry Pi 5 Model B Rev 1.0", "d04170", 8192),
        ("cm4-2gb-r1.1", "cm4", "Raspberry Pi Compute Module 4 Rev 1.1", "b03141", 2048),
        ("bad-pi5-revision-garbage", "pi5", "Raspberry Pi 5 Model B Rev 1.0", "ffffffff", None),
    ],
)
def test_the_heartbeat_reports_board_revision_and_ram(
    tmp_path, family_repo, family_server, tree, board, model, revision, memory
):
    device = on_board(tmp_path / "device", family_repo, tree)
    setup_device(device, family_server)
    make_agent(device).cycle()
    report = family_server.heartbeats[-1].board
    assert report is not None
    assert (report.board, report.model, report.revision, report.memory_mib) == (
        board,
        model,
        revision,
        memory,
    )


def test_the_qemu_tier_reports_its_virt_board(tmp_path, family_repo, family_server):
    device = on_board(tmp_path / "device", family_repo, "qemu-virt", hardware="pi4")
    setup_device(device, family_server)
    make_agent(device).cycle()
    assert family_server.registrations[0].hardware is Hardware.PI4
    report = family_server.heartbeats[-1].board
    assert report is not None and (report.board, report.revision) == ("qemu", None)


def test_status_shows_the_board_and_why_it_is_refused(tmp_path, family_repo, capsys):
    device = on_board(tmp_path / "device", family_repo, "zero2w-r1.0")
    assert main(cli(device, "status", "--json")) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["board"], info["board_revision"], info["memory_mib"]) == ("zero2w", "902120", 512)
    assert info["board_model"] == "Raspberry Pi Zero 2 W Rev 1.0"
    assert info["hardware"].startswith(
        "refused: Raspberry Pi Zero 2 W Rev 1.0 has no tryboot A/B boot"
    )
    device = on_board(tmp_path / "pi5", family_repo, "pi5-8gb-r1.0")
    assert main(cli(device, "status", "--json")) == 0
    assert json.loads(capsys.readouterr().out)["hardware"] == "pi5"
