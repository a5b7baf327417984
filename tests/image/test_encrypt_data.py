"""``assemble --encrypt-data``: no data filesystem and no key on the build host, only the blank
marker the device formats, the seed indexes on the config partition, fleet.data=luks."""

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
