"""Which boards an image's boot files serve: config.txt read per board, each family's
firmware, kernel, initramfs and device trees; ``assemble --hardware`` refuses what is
missing with one error naming it, and ``inspect`` lists the boards."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetcore.boards import Board
from fleetcore.release import Hardware
from image import assemble
from image.bootfiles import BootFiles, check, describe_boards
from image.cli import main
from tests.image.conftest import FIXTURES, PI5_BOOT_FILES, make_rootfs, request

DEBOOTSTRAP = FIXTURES / "boot-files"
ALL_BOARDS = [Board.PI4, Board.PI400, Board.CM4, Board.PI5, Board.PI500, Board.CM5]
# Raspberry Pi OS (bookworm, arm64): its kernels and every board's downstream device tree.
PI_OS = [
    "config.txt", "cmdline.txt", "start4.elf", "fixup4.dat", "start.elf", "fixup.dat",
    "kernel8.img", "kernel_2712.img", "initramfs8", "initramfs_2712",
    "bcm2711-rpi-4-b.dtb", "bcm2711-rpi-400.dtb", "bcm2711-rpi-cm4.dtb",
    "bcm2712-rpi-5-b.dtb", "bcm2712d0-rpi-5-b.dtb", "bcm2712-rpi-500.dtb",
    "bcm2712-rpi-cm5-cm5io.dtb", "bcm2712-rpi-cm5l-cm5io.dtb", "overlays/README",
]  # fmt: skip
PI_OS_CONFIG = "auto_initramfs=1\narm_64bit=1\n[cm4]\notg_mode=1\n[cm5]\ndtoverlay=dwc2\n[all]\n"


def debootstrap_files() -> BootFiles:
    names = [
        line
        for line in (DEBOOTSTRAP / "debootstrap-bookworm.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    return BootFiles.of(names, (DEBOOTSTRAP / "debootstrap-bookworm-config.txt").read_text())


def test_raspberry_pi_os_serves_every_board():
    files = BootFiles.of(PI_OS, PI_OS_CONFIG)
    assert files.boards() == ALL_BOARDS
    assert files.families() == [Hardware.PI4, Hardware.PI5]
    assert describe_boards(files) == "pi4: pi4, pi400, cm4; pi5: pi5, pi500, cm5"


def test_debian_bookworm_serves_the_pi4_family_and_no_pi5():
    """Debian's 6.1 kernel has no BCM2712 device tree; its CM4 tree has the upstream name,
    which the firmware loads under raspi-firmware's upstream_kernel=1."""
    files = debootstrap_files()
    assert files.boards() == [Board.PI4, Board.PI400, Board.CM4]
    assert files.families() == [Hardware.PI4]
    assert files.missing_for(Hardware.PI5) == [
        "bcm2712-rpi-5-b.dtb",
        "bcm2712-rpi-500.dtb",
        "bcm2712-rpi-cm5*.dtb",
    ]
    assert files.missing_for(Hardware.QEMU) == []
    assert files.config_txt is not None
    plain = BootFiles.of(files.names, files.config_txt.replace("upstream_kernel=1", ""))
    assert plain.missing_for(Hardware.PI4) == ["bcm2711-rpi-cm4.dtb"]


def test_default_kernels_per_family():
    names = [n for n in PI_OS if n not in {"kernel8.img", "kernel_2712.img"}]
    files = BootFiles.of(names, PI_OS_CONFIG)
    assert files.missing_for(Hardware.PI4) == ["kernel8.img"]
    assert files.missing_for(Hardware.PI5) == ["kernel_2712.img or kernel8.img"]
    assert BootFiles.of([*names, "kernel8.img"], PI_OS_CONFIG).boards() == ALL_BOARDS
    assert BootFiles.of(names, PI_OS_CONFIG).missing_for(Hardware.QEMU) == [
        "a kernel= line in config.txt"
    ]


@pytest.mark.parametrize(
    ("config", "names", "pi4_missing", "pi5_missing"),
    [
        # Per-family kernels in model sections, [all] resetting the filter.
        ("[pi4]\nkernel=k4\n[pi5]\nkernel=k5\n[all]\n", ["k4", "k5"], [], []),
        ("[pi4]\nkernel=k4\n[pi5]\nkernel=k5\n[all]\n", ["k4"], [], ["k5"]),
        # [pi400] also sees [pi4]; the later section wins for it alone.
        ("kernel=k\n[pi400]\nkernel=k400\n[all]\n", ["k"], ["k400"], []),
        # board-type=0x14 is the CM4's type code; device_tree= replaces the board's tree.
        ("kernel=k\n[board-type=0x14]\ndevice_tree=cm4.dtb\n[all]\n", ["k"], ["cm4.dtb"], []),
        # Runtime filters ([tryboot], [EDID=...]) and [none] do not count.
        ("kernel=k\n[tryboot]\nkernel=t\n[none]\nkernel=n\n[all]\n", ["k"], [], []),
        # An initramfs line names one file or several, comma-separated.
        ("kernel=k\ninitramfs a,b followkernel\n", ["k", "a"], ["b"], ["b"]),
        ("kernel=k\n[pi5]\ninitramfs r5 followkernel\n[all]\n", ["k"], [], ["r5"]),
    ],
)
def test_config_txt_is_read_per_board(config, names, pi4_missing, pi5_missing):
    firmware = ["start4.elf", "fixup4.dat", *PI_OS[10:18]]  # both families' device trees
    files = BootFiles.of([*firmware, *names, "config.txt"], config)
    assert files.missing_for(Hardware.PI4) == pi4_missing
    assert files.missing_for(Hardware.PI5) == pi5_missing


def test_no_config_txt_serves_nothing():
    files = BootFiles.of([n for n in PI_OS if n != "config.txt"], None)
    assert files.boards() == []
    assert (
        check(files, [Hardware.PI4, Hardware.PI5]) == "pi4 lacks config.txt; pi5 lacks config.txt"
    )
    assert describe_boards(files) == "none (no board's boot files are complete)"


def test_file_names_compare_without_case_as_on_fat():
    files = BootFiles.of([n.upper() for n in PI_OS], PI_OS_CONFIG)
    assert files.boards() == ALL_BOARDS


# -- fleet-image assemble and inspect ----------------------------------------------------


def _assemble(rootfs: Path, out: Path, *hardware: str) -> list[str]:
    argv = ["assemble", "--rootfs", str(rootfs), "--out", str(out), "--version", "1.0"]
    return argv + (["--hardware", ",".join(hardware)] if hardware else [])


def _error(capsys) -> str:
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("fleet-image: error: ")]
    assert len(errors) == 1, err
    return errors[0]


def test_assemble_refuses_a_family_whose_boot_files_are_missing(tmp_path, capsys):
    rootfs = make_rootfs(tmp_path / "rootfs")
    for name in PI5_BOOT_FILES:
        (rootfs / "boot/firmware" / name).unlink()
    (rootfs / "boot/firmware/fixup4.dat").unlink()
    out = tmp_path / "out"
    assert main(_assemble(rootfs, out, "pi4", "pi5")) == 1
    assert _error(capsys).endswith(
        "boot/firmware lacks boot files: pi4 lacks fixup4.dat; pi5 lacks bcm2712-rpi-5-b.dtb, "
        "bcm2712-rpi-500.dtb, bcm2712-rpi-cm5*.dtb"
    )
    assert not out.exists() and list(tmp_path.iterdir()) == [rootfs]


def test_assemble_refuses_a_family_missing_one_board(tmp_path, capsys):
    rootfs = make_rootfs(tmp_path / "rootfs")
    (rootfs / "boot/firmware/bcm2712-rpi-500.dtb").unlink()
    assert main(_assemble(rootfs, tmp_path / "out", "pi5")) == 1
    assert _error(capsys).endswith("pi5 lacks bcm2712-rpi-500.dtb")


def test_assemble_targets_the_families_the_rootfs_serves_by_default(tmp_path):
    rootfs = make_rootfs(tmp_path / "rootfs")
    for name in PI5_BOOT_FILES:
        (rootfs / "boot/firmware" / name).unlink()
    manifest = assemble.assemble(request(rootfs, tmp_path / "out", hardware=None))
    assert manifest.hardware == (Hardware.PI4,)


def test_assemble_auto_with_no_whole_family_is_refused(tmp_path, capsys):
    rootfs = make_rootfs(tmp_path / "rootfs")
    (rootfs / "boot/firmware/start4.elf").unlink()
    (rootfs / "boot/firmware/bcm2712-rpi-5-b.dtb").unlink()
    assert main(_assemble(rootfs, tmp_path / "out")) == 1
    assert "serves no whole board family: pi4 lacks start4.elf; pi5 lacks bcm2712-rpi-5-b.dtb" in (
        _error(capsys)
    )


def test_assemble_for_qemu_needs_the_kernel_config_txt_names(tmp_path, capsys):
    rootfs = make_rootfs(tmp_path / "rootfs")
    assert assemble.assemble(
        request(rootfs, tmp_path / "ok", hardware=(Hardware.QEMU,))
    ).hardware == (Hardware.QEMU,)
    (rootfs / "boot/firmware/initrd.img").unlink()
    assert main(_assemble(rootfs, tmp_path / "out", "qemu")) == 1
    assert _error(capsys).endswith("qemu lacks initrd.img")


def test_inspect_lists_the_boards_of_disk_and_release(built, capsys):
    assert main(["inspect", str(built.disk)]) == 0
    out = capsys.readouterr().out
    assert out.count("boards: pi4: pi4, pi400, cm4; pi5: pi5, pi500, cm5") == 2  # boot_a, boot_b
    assert main(["inspect", str(built.release)]) == 0
    assert "  boards: pi4: pi4, pi400, cm4; pi5: pi5, pi500, cm5\n" in capsys.readouterr().out


def test_inspect_lists_only_the_boards_served(tmp_path, capsys):
    rootfs = make_rootfs(tmp_path / "rootfs")
    (rootfs / "boot/firmware/bcm2712-rpi-cm5-cm5io.dtb").unlink()
    out = tmp_path / "out"
    assemble.assemble(request(rootfs, out, hardware=(Hardware.PI4,)))
    assert main(["inspect", str(out / "release")]) == 0
    text = capsys.readouterr().out
    assert (
        "  hardware: pi4\n" in text and "  boards: pi4: pi4, pi400, cm4; pi5: pi5, pi500\n" in text
    )
