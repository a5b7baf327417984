"""``assemble --encrypt-data``: no data filesystem and no key on the build host, only the blank
marker the device formats, the seed indexes on the config partition, fleet.data=luks."""

import shutil
import subprocess
from pathlib import Path

import pytest

from image import assemble, encrypteddata
from image.cli import main
from tests.image.conftest import Built, request
from tests.image.test_assemble import _fat_file, _part, _read


@pytest.fixture(scope="module")
def encrypted(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("encrypted") / "out"
    assemble.assemble(request(rootfs, out, encrypt_data=True))
    return Built(rootfs, out)


def test_the_data_partition_is_the_marker_and_zeros(encrypted: Built):
    start, size = _part(encrypted, "data")
    data = _read(encrypted.disk, start, size)
    marker = encrypteddata.BLANK_MARKER

    assert data[: len(marker)] == marker
    assert data[len(marker) :].count(0) == size - len(marker)


def test_the_device_program_looks_for_the_same_marker():
    program = Path(__file__).resolve().parents[2] / (
        "pi-gen-config/stage-fleet/01-readonly/files/fleet-data-luks"
    )
    line = f'MARKER="{encrypteddata.BLANK_MARKER.decode()}"'
    assert line in program.read_text().splitlines()


def test_both_slots_open_data_through_luks(encrypted: Built):
    for slot in "ab":
        text = _fat_file(encrypted.disk, _part(encrypted, f"boot_{slot}")[0], "cmdline.txt")
        assert encrypteddata.KERNEL_ARG in text.split()


def test_slot_a_indexes_wait_on_the_config_partition(encrypted: Built):
    config = _part(encrypted, "config")[0]
    listing = subprocess.run(
        ["mdir", "-b", "-i", f"{encrypted.disk}@@{config}", f"::/{encrypteddata.SEED_DIR}"],
        capture_output=True,
        check=True,
        env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"},
    ).stdout.decode()
    names = sorted(Path(line).name for line in listing.split())
    indexes = sorted(p.name for p in encrypted.release.glob("*.index.json"))
    assert names == indexes
    for name in names:
        seeded = _fat_file(encrypted.disk, config, f"{encrypteddata.SEED_DIR}/{name}")
        assert seeded == (encrypted.release / name).read_text()


def test_a_plain_image_has_no_luks_argument(built: Built):
    text = _fat_file(built.disk, _part(built, "boot_a")[0], "cmdline.txt")
    assert not any(arg.startswith(f"{encrypteddata.ARG}=") for arg in text.split())


def test_the_cli_flag(rootfs: Path, tmp_path: Path):
    out = tmp_path / "out"
    sizes = ["--sizes", "config=4M,boot=16M,system=24M,data=16M"]
    argv = ["assemble", "--rootfs", str(rootfs), "--version", "1.0", *sizes, "--encrypt-data"]
    assert main([*argv, "--out", str(out)]) == 0
    start, _ = _part(Built(rootfs, out), "data")
    assert _read(out / assemble.DISK_IMAGE, start, 32) == encrypteddata.BLANK_MARKER


def _rootfs_with_setting(rootfs: Path, tmp_path: Path, word: str) -> Path:
    """A copy of ``rootfs`` whose build recorded ``word`` as its data partition setting."""
    copy = tmp_path / "rootfs"
    shutil.copytree(rootfs, copy, symlinks=True)
    setting = copy / encrypteddata.SETTING_FILE
    setting.parent.mkdir(parents=True, exist_ok=True)
    setting.write_text(f"{word}\n")
    return copy


def _data_start(disk: Path, rootfs: Path) -> bytes:
    start, _ = _part(Built(rootfs, disk.parent), "data")
    return _read(disk, start, len(encrypteddata.BLANK_MARKER))


@pytest.mark.parametrize(
    ("word", "flag", "encrypted"),
    [
        ("luks", [], True),
        ("ext4", [], False),
        ("luks", ["--no-encrypt-data"], False),
        ("ext4", ["--encrypt-data"], True),
    ],
)
def test_the_build_setting_decides_and_the_flag_overrides_it(
    rootfs: Path, tmp_path: Path, word: str, flag: list[str], encrypted: bool
):
    tree = _rootfs_with_setting(rootfs, tmp_path, word)
    out = tmp_path / "out"
    argv = ["assemble", "--rootfs", str(tree), "--version", "1.0", "--out", str(out)]
    assert main([*argv, "--sizes", "config=4M,boot=16M,system=24M,data=16M", *flag]) == 0
    found = _data_start(out / assemble.DISK_IMAGE, tree)
    assert (found == encrypteddata.BLANK_MARKER) is encrypted


def test_a_rootfs_without_the_setting_stays_plain(rootfs: Path):
    assert not (rootfs / encrypteddata.SETTING_FILE).exists()
    assert encrypteddata.wanted(rootfs, None) is False


def test_a_damaged_setting_is_refused_and_nothing_is_written(rootfs: Path, tmp_path: Path, capsys):
    tree = _rootfs_with_setting(rootfs, tmp_path, "maybe")
    out = tmp_path / "out"
    argv = ["assemble", "--rootfs", str(tree), "--version", "1.0", "--out", str(out)]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert f"{encrypteddata.SETTING_FILE} holds 'maybe', not luks or ext4" in err
    assert len(err.strip().splitlines()) <= 2  # the error and its hint
    assert not out.exists()
