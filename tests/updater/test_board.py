"""Board detection against the Raspberry Pi documentation's revision codes and DT strings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetcore.boards import Board
from fleetcore.release import Hardware
from updater.board import Revision, detect, read_serial, resolve_hardware
from updater.errors import BoardRefused

FIXTURES = Path(__file__).parent / "fixtures"
BOARDS = yaml.safe_load((FIXTURES / "boards.yaml").read_text())
TREES = FIXTURES / "device-trees"
EXPECTED = yaml.safe_load((TREES / "expected.yaml").read_text())


def device_tree(
    base: Path, *, model: str, compatible: list[str], code: int | None, serial: str | None
) -> tuple[Path, Path]:
    dt, proc = base / "device-tree", base / "proc"
    (dt / "system").mkdir(parents=True)
    proc.mkdir()
    (dt / "model").write_bytes(model.encode() + b"\0")
    (dt / "compatible").write_bytes(b"".join(c.encode() + b"\0" for c in compatible))
    if code is not None:
        (dt / "system" / "linux,revision").write_bytes(code.to_bytes(4, "big"))
    if serial is not None:
        (dt / "serial-number").write_bytes(serial.encode() + b"\0")
    return dt, proc


@pytest.mark.parametrize("row", BOARDS, ids=lambda row: f"{row['code']}-{row['board']}")
def test_every_documented_board_is_detected(tmp_path, row):
    code = int(str(row["code"]), 16)
    soc = {
        "pi3": "bcm2837",
        "zero2w": "bcm2837",
        "pi5": "bcm2712",
        "cm5": "bcm2712",
        "pi500": "bcm2712",
    }.get(row["board"], "bcm2711")
    dt, proc = device_tree(
        tmp_path,
        model=row["model"],
        compatible=[row["compatible"], f"brcm,{soc}"],
        code=code,
        serial="10000000a1b2c3d4",
    )
    info = detect(dt, proc)
    assert info.board is Board(row["board"])
    assert info.memory_mib == row["ram"]
    assert info.revision is not None and info.revision.manufacturer == row["maker"]
    assert info.supports_tryboot_ab is row["tryboot"]
    assert info.model == row["model"]
    assert info.serial == "10000000a1b2c3d4"


@pytest.mark.parametrize("row", BOARDS, ids=lambda row: f"{row['code']}-{row['board']}")
def test_compatible_string_alone_names_the_same_family(tmp_path, row):
    """Without a revision (a device tree that lacks it), the compatible string decides."""
    dt, proc = device_tree(
        tmp_path, model=row["model"], compatible=[row["compatible"]], code=None, serial=None
    )
    assert detect(dt, proc).board is Board(row["board"])


def test_revision_and_serial_from_cpuinfo_when_the_device_tree_lacks_them(tmp_path):
    dt, proc = device_tree(
        tmp_path, model="Raspberry Pi 4 Model B Rev 1.4", compatible=[], code=None, serial=None
    )
    (proc / "cpuinfo").write_text(
        "processor\t: 0\nHardware\t: BCM2835\nRevision\t: c03114\nSerial\t\t: 10000000765fc593\n"
        "Model\t\t: Raspberry Pi 4 Model B Rev 1.4\n"
    )
    info = detect(dt, proc)
    assert (info.board, info.memory_mib, info.serial) == (Board.PI4, 4096, "10000000765fc593")


def test_qemu_virt_machine_and_an_empty_tree(tmp_path):
    dt, proc = device_tree(
        tmp_path,
        model="linux,dummy-virt",
        compatible=["linux,dummy-virt"],
        code=None,
        serial=None,
    )
    assert detect(dt, proc).board is Board.QEMU
    assert detect(tmp_path / "none", tmp_path / "none").board is Board.UNKNOWN


@pytest.mark.parametrize("serial", ["", "0000000000000000", "not hex!", "1" * 40])
def test_missing_or_bogus_serials_are_none(tmp_path, serial):
    dt, proc = device_tree(tmp_path, model="x", compatible=[], code=None, serial=serial)
    assert read_serial(dt, proc) is None


def test_old_style_codes_are_not_decoded():
    assert Revision.decode(0x0010) is None
    assert Revision.decode(0x1000002) is None  # an over-volted old-style B


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=64), st.binary(max_size=64), st.binary(max_size=8), st.binary(max_size=64)
)
def test_any_firmware_bytes_give_an_answer_not_an_exception(
    tmp_path_factory, model, compat, revision, serial
):
    base = tmp_path_factory.mktemp("dt")
    (base / "system").mkdir()
    (base / "model").write_bytes(model)
    (base / "compatible").write_bytes(compat)
    (base / "system" / "linux,revision").write_bytes(revision)
    (base / "serial-number").write_bytes(serial)
    info = detect(base, base / "proc")
    assert isinstance(info.board, Board)


def test_every_checked_in_tree_has_an_expectation():
    assert {p.name for p in TREES.iterdir() if p.is_dir()} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_checked_in_device_trees(name):
    """The firmware's own files, as checked-in bytes: board, family, RAM, revision, refusal."""
    want = EXPECTED[name]
    info = detect(TREES / name / "device-tree", TREES / name / "proc")
    assert info.board is Board(want["board"])
    assert info.memory_mib == want["ram"]
    code = f"{info.revision.code:06x}" if info.revision else None
    assert code == (str(want["revision"]) if want["revision"] is not None else None)
    if "pcb" in want:
        assert info.revision is not None
        assert (info.revision.pcb_revision, info.revision.processor) == (want["pcb"], want["soc"])
    if want["family"] is None:
        with pytest.raises(BoardRefused, match=want["refused"]):
            resolve_hardware(info, None)
        with pytest.raises(BoardRefused):  # a configured family does not override it
            resolve_hardware(info, Hardware.PI4)
    else:
        assert resolve_hardware(info, None) is Hardware(want["family"])


@pytest.mark.parametrize(
    ("name", "configured"),
    [
        ("pi5-8gb-r1.0", Hardware.PI4),
        ("cm4-1gb-r1.0", Hardware.PI5),
        ("pi4b-4gb-r1.5", Hardware.QEMU),
    ],
)
def test_updater_yaml_cannot_name_another_family_than_the_board(name, configured):
    info = detect(TREES / name / "device-tree", TREES / name / "proc")
    with pytest.raises(BoardRefused, match=f"sets hardware: {configured.value}"):
        resolve_hardware(info, configured)
    assert resolve_hardware(info, info.family) is info.family


def test_without_raspberry_pi_firmware_the_configuration_chooses(tmp_path):
    info = detect(tmp_path / "none", tmp_path / "none")
    assert resolve_hardware(info, None) is Hardware.QEMU
    assert resolve_hardware(info, Hardware.PI4) is Hardware.PI4  # the QEMU tier's updater.yaml
