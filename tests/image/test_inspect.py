from pathlib import Path

from image.cli import main
from tests.image.conftest import VERSION, Built


def test_inspect_disk(built: Built, capsys):
    assert main(["inspect", str(built.disk)]) == 0
    out = capsys.readouterr().out
    for label in ("config", "boot_a", "boot_b", "system_a", "system_b", "data"):
        assert label in out
    assert "root=PARTLABEL=system_b" in out
    assert "tryboot_a_b=1" in out
    assert "squashfs" in out and "ext4" in out


def test_inspect_release(built: Built, capsys):
    assert main(["inspect", str(built.release)]) == 0
    out = capsys.readouterr().out
    assert f"release {VERSION}" in out
    assert f"os/{VERSION}/system.index.json" in out
    assert "pi4, pi5" in out
    assert "slot b: " in out


def test_inspect_nothing(tmp_path: Path, capsys):
    assert main(["inspect", str(tmp_path / "nope")]) == 1
    assert "neither a disk image nor a release" in capsys.readouterr().err
