import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetcore.firstboot import load_firstboot
from image import blockdev, flash
from image.cli import main
from image.errors import FlashError, UnsafeTargetError
from tests.image.conftest import FIXTURES, Built
from tests.image.test_assemble import _fat_file, _part, _read


def _config_offset(built: Built) -> int:
    return _part(built, "config")[0]


def test_out_file_gets_fleet_yaml(built: Built, tmp_path: Path):
    out = tmp_path / "personal.img"
    assert (
        main(
            ["flash", str(built.disk), "--out", str(out), "--config", str(FIXTURES / "fleet.yaml")]
        )
        == 0
    )
    assert out.stat().st_mode & 0o777 == 0o600  # it holds the enrolment token and Wi-Fi key
    # The copy keeps the image's holes: a card image is mostly empty space.
    assert out.stat().st_blocks * 512 <= built.disk.stat().st_blocks * 512 + 2**20
    offset = _config_offset(built)
    written = load_firstboot(_fat_file(out, offset, "fleet.yaml").encode())
    assert written == load_firstboot((FIXTURES / "fleet.yaml").read_bytes())
    assert _fat_file(out, offset, "autoboot.txt") == _fat_file(built.disk, offset, "autoboot.txt")
    # Only the config partition changed.
    start, _size = _part(built, "boot_a")
    end = _part(built, "data")
    assert _read(out, start, end[0] + end[1] - start) == _read(
        built.disk, start, end[0] + end[1] - start
    )


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [("fleet-bad-hostname.yaml", "hostname"), ("fleet-no-token.yaml", "no enrollment_token")],
)
def test_bad_fleet_yaml_writes_nothing(built: Built, tmp_path: Path, capsys, fixture, expected):
    out = tmp_path / "personal.img"
    argv = ["flash", str(built.disk), "--out", str(out), "--config", str(FIXTURES / fixture)]
    assert main(argv) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and expected in err[0]
    assert list(tmp_path.iterdir()) == []


def test_not_a_fleet_image(tmp_path: Path, capsys):
    bogus = tmp_path / "bogus.img"
    bogus.write_bytes(bytes(2**20))
    argv = [
        "flash",
        str(bogus),
        "--out",
        str(tmp_path / "o"),
        "--config",
        str(FIXTURES / "fleet.yaml"),
    ]
    assert main(argv) == 1
    assert "partition table" in capsys.readouterr().err


def test_regular_file_is_not_a_device(built: Built, tmp_path: Path):
    target = tmp_path / "disk"
    target.write_bytes(b"")
    with pytest.raises(FlashError, match="not a block device"):
        flash.flash(built.disk, config_file=FIXTURES / "fleet.yaml", device=target, out=None)


# -- real block devices (root) -----------------------------------------------------------------


@contextlib.contextmanager
def _loop(backing: Path) -> Iterator[Path]:
    dev = (
        subprocess.run(
            ["losetup", "--find", "--show", "--partscan", backing], capture_output=True, check=True
        )
        .stdout.decode()
        .strip()
    )
    # The kernel's own scan at attach time is not reliable in containers; partx asks again.
    subprocess.run(["partx", "--add", dev], capture_output=True, check=False)
    try:
        yield Path(dev)
    finally:
        subprocess.run(["losetup", "--detach", dev], check=False)


@pytest.mark.integration
def test_flash_loop_device_and_verify(built: Built, tmp_path: Path, require_root):
    backing = tmp_path / "card.img"
    with backing.open("wb") as handle:
        handle.truncate(built.disk.stat().st_size + 8 * 2**20)
    with _loop(backing) as dev:
        assert (
            main(
                [
                    "flash",
                    str(built.disk),
                    "--device",
                    str(dev),
                    "--config",
                    str(FIXTURES / "fleet.yaml"),
                ]
            )
            == 0
        )
    offset = _config_offset(built)
    assert "cam-entrance-01" in _fat_file(backing, offset, "fleet.yaml")
    start, size = _part(built, "system_a")
    assert _read(backing, start, size) == _read(built.disk, start, size)


@pytest.mark.integration
def test_refuses_mounted_disk(built: Built, tmp_path: Path, require_root):
    backing = tmp_path / "card.img"
    backing.write_bytes(built.disk.read_bytes())
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with _loop(backing) as dev:
        subprocess.run(["mount", "-o", "ro", f"{dev}p6", mnt], check=True)
        try:
            with pytest.raises(UnsafeTargetError, match="is mounted"):
                blockdev.check_target(dev)
        finally:
            subprocess.run(["umount", mnt], check=True)
        assert blockdev.check_target(dev) == backing.stat().st_size


@pytest.mark.integration
def test_refuses_the_root_disk(require_root):
    disks = blockdev.root_disks()
    assert disks, "the root filesystem should sit on a block device"
    with pytest.raises(UnsafeTargetError, match="root filesystem"):
        blockdev.check_target(Path(sorted(disks)[0]))


@pytest.mark.integration
def test_refuses_a_partition(built: Built, tmp_path: Path, require_root):
    backing = tmp_path / "card.img"
    backing.write_bytes(built.disk.read_bytes())
    with _loop(backing) as dev, pytest.raises(UnsafeTargetError, match="not a whole disk"):
        blockdev.check_target(Path(f"{dev}p2"))
