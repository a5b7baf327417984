from pathlib import Path

import pytest

from image.backends import stages
from image.backends.base import STAGE_DIR
from image.errors import BuildError


def _stage(tmp_path: Path) -> Path:
    stage = tmp_path / "stage-x"
    (stage / "00-one").mkdir(parents=True)
    (stage / "00-one/00-packages").write_text("jq curl # tools\nhtop\n")
    (stage / "00-one/00-run.sh").write_text('echo "one $FLEET_THING" >> "$ROOTFS_DIR/log"\n')
    (stage / "01-two").mkdir()
    (stage / "01-two/00-run.sh").write_text('test -f ./marker\necho two >> "$ROOTFS_DIR/log"\n')
    (stage / "01-two/marker").write_text("")
    (stage / "02-skip").mkdir()
    (stage / "02-skip/00-run.sh").write_text('echo skipped >> "$ROOTFS_DIR/log"\n')
    (stage / "files").mkdir()
    return stage


def test_package_lists(tmp_path: Path):
    assert stages.package_lists(_stage(tmp_path)) == ["jq", "curl", "htop"]


def test_host_scripts_run_in_order_in_their_folder(tmp_path: Path):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    stages.run_stage(_stage(tmp_path), rootfs, {"FLEET_THING": "x"}, skip=frozenset({"02-skip"}))
    assert (rootfs / "log").read_text() == "one x\ntwo\n"


def test_failing_script_names_itself(tmp_path: Path):
    stage = _stage(tmp_path)
    (stage / "01-two/00-run.sh").write_text("exit 3\n")
    with pytest.raises(BuildError, match=r"01-two/00-run\.sh"):
        stages.run_stage(stage, tmp_path, {})


def test_fleet_stage_is_well_formed():
    names = [sub.name for sub in stages.substages(STAGE_DIR)]
    assert names == [
        "00-packages",
        "01-readonly",
        "02-data",
        "03-updater",
        "04-watchdog",
        "05-export",
    ]
    assert "docker.io" in stages.package_lists(STAGE_DIR)
    for script in STAGE_DIR.rglob("*.sh"):
        assert script.stat().st_mode & 0o111, script
