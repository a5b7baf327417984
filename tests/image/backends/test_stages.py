import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from image import config, encrypteddata, safemode
from image.backends import stages
from image.backends.base import STAGE_DIR, stage_settings
from image.errors import BuildError
from tests.image.conftest import FIXTURES
from updater.cli import SAFE_MODE_BUNDLE
from updater.paths import Roots

SHEBANG = "#!/bin/bash -e\n"


def _stage(tmp_path: Path) -> Path:
    stage = tmp_path / "stage-x"
    (stage / "00-one").mkdir(parents=True)
    (stage / "00-one/00-packages").write_text("jq curl # tools\nhtop\n")
    one = 'echo "one $FLEET_THING" >> "$ROOTFS_DIR/log"\n'
    (stage / "00-one/00-run.sh").write_text(SHEBANG + one)
    (stage / "01-two").mkdir()
    two = 'test -f ./marker\necho two >> "$ROOTFS_DIR/log"\n'
    (stage / "01-two/00-run.sh").write_text(SHEBANG + two)
    (stage / "01-two/marker").write_text("")
    (stage / "02-skip").mkdir()
    (stage / "02-skip/00-run.sh").write_text(SHEBANG + 'echo skipped >> "$ROOTFS_DIR/log"\n')
    (stage / "files").mkdir()
    for script in stage.rglob("*.sh"):
        script.chmod(0o755)
    return stage


def test_package_lists(tmp_path: Path):
    assert stages.package_lists(_stage(tmp_path)) == ["jq", "curl", "htop"]


def test_host_scripts_run_in_order_in_their_folder(tmp_path: Path):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    stages.run_stage(_stage(tmp_path), rootfs, {"FLEET_THING": "x"}, skip=frozenset({"02-skip"}))
    assert (rootfs / "log").read_text() == "one x\ntwo\n"


def test_relative_rootfs_reaches_scripts_absolute(tmp_path: Path, monkeypatch):
    """fleet-image build --out with a relative path: scripts run in their own folders."""
    (tmp_path / "rootfs").mkdir()
    monkeypatch.chdir(tmp_path)
    stages.run_stage(_stage(tmp_path), Path("rootfs"), {"FLEET_THING": "rel"})
    assert (tmp_path / "rootfs/log").read_text() == "one rel\ntwo\nskipped\n"


def test_skip_file_and_order_as_in_pi_gen(tmp_path: Path):
    stage = _stage(tmp_path)
    (stage / "02-skip/SKIP").write_text("")
    (stage / "01-two/00-run-chroot.sh").write_text("true\n")
    assert [p.name for p in stages.scripts(stage / "01-two")] == [
        "00-run.sh",
        "00-run-chroot.sh",
    ]
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    (stage / "01-two/00-run-chroot.sh").unlink()
    stages.run_stage(stage, rootfs, {"FLEET_THING": "x"})
    assert (rootfs / "log").read_text() == "one x\ntwo\n"


def test_non_executable_run_script_is_refused(tmp_path: Path):
    """pi-gen would skip it without a word."""
    stage = _stage(tmp_path)
    (stage / "01-two/00-run.sh").chmod(0o644)
    with pytest.raises(BuildError, match="not executable"):
        stages.run_stage(stage, tmp_path, {})


@pytest.mark.parametrize("name", ["00-debconf", "00-packages-nr", "00-patches"])
def test_unsupported_pi_gen_features_are_refused(tmp_path: Path, name: str):
    stage = _stage(tmp_path)
    (stage / "01-two" / name).write_text("")
    with pytest.raises(BuildError, match="not supported outside pi-gen"):
        stages.run_stage(stage, tmp_path, {})


def test_failing_script_names_itself(tmp_path: Path):
    stage = _stage(tmp_path)
    (stage / "01-two/00-run.sh").write_text("#!/bin/sh\nexit 3\n")
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


def test_compose_v2_script_fetches_only_through_its_own_apt_sources():
    """The Compose v2 plugin comes from Debian trixie through a private apt configuration; the
    image's own sources never name trixie (ADR 0052)."""
    script = (STAGE_DIR / stages.PACKAGES_SUBSTAGE / "01-run-chroot.sh").read_text()
    for private in ("SourceList", "SourceParts", "Preferences", "PreferencesParts"):
        assert f'-o "Dir::Etc::{private}=${{work}}/apt/' in script, private
    assert "signed-by=${KEYRING}" in script and "update --error-on=any" in script
    assert "/etc/apt/sources.list" not in script
    assert "PLUGIN=/usr/libexec/docker/cli-plugins/docker-compose" in script
    # docker.io (which finds the plugin) is installed by the list this script follows.
    assert "docker.io" in stages.package_lists(STAGE_DIR)
    assert "docker-compose" not in stages.package_lists(STAGE_DIR)


def test_fleet_stage_has_the_personalisation_tools():
    """The updater renames the device and applies Wi-Fi (updater/personalise.py)."""
    packages = stages.package_lists(STAGE_DIR)
    for package in ("libnss-myhostname", "iw", "rfkill"):
        assert package in packages, package


def test_data_links_match_the_updater_and_the_initramfs_creates_them():
    """Every /etc link into /data the image makes is a path the updater writes, and the
    initramfs (fleet-data) lays it out before systemd starts, so none dangles on a device."""
    chroot_script = (STAGE_DIR / "01-readonly/01-run-chroot.sh").read_text()
    links = dict(
        (Path(link), Path(target))
        for target, link in re.findall(r"^ln -sfn (/data/\S+) (/etc/\S+)$", chroot_script, re.M)
    )
    roots = Roots()
    assert links == {
        Path("/etc/machine-id"): Path("/data/etc/machine-id"),
        Path("/etc/hostname"): roots.hostname_file,
        Path("/etc/NetworkManager/system-connections"): roots.nm_connections,
        Path("/etc/modprobe.d/metrica-wifi-country.conf"): roots.wifi_country_file,
    }
    fleet_data = (STAGE_DIR / "01-readonly/files/fleet-data").read_text()
    for target in links.values():
        assert f'"$d/{target.relative_to("/data")}"' in fleet_data, target


SAFE_MODE_SCRIPT = STAGE_DIR / "03-updater" / "02-run.sh"


def _install_safe_mode(rootfs: Path, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["./" + SAFE_MODE_SCRIPT.name],
        cwd=SAFE_MODE_SCRIPT.parent,
        env={"PATH": os.environ["PATH"], "ROOTFS_DIR": str(rootfs), **env},
        capture_output=True,
    )


def test_safe_mode_stack_goes_where_the_updater_starts_it(tmp_path: Path):
    """The stage installs what ``FLEET_SAFE_MODE`` names at ``SAFE_MODE_BUNDLE``, replacing
    whatever was there, root-owned and not writable by others."""
    prepared = tmp_path / "prepared"
    shutil.copytree(safemode.SOURCE, prepared)
    (prepared / "images").mkdir()
    (prepared / "images" / f"{'0' * 64}.tar").write_bytes(b"archive")
    (prepared / "role.yaml").chmod(0o666)
    rootfs = tmp_path / "rootfs"
    stale = rootfs / safemode.INSTALL_PATH / "stale"
    stale.parent.mkdir(parents=True)
    stale.write_text("from an earlier build")

    done = _install_safe_mode(rootfs, {"FLEET_SAFE_MODE": str(prepared)})

    assert done.returncode == 0, done.stderr
    installed = rootfs / SAFE_MODE_BUNDLE.relative_to("/")
    assert installed == rootfs / safemode.INSTALL_PATH
    assert sorted(p.relative_to(installed) for p in installed.rglob("*")) == sorted(
        p.relative_to(prepared) for p in prepared.rglob("*")
    )
    assert (installed / "images" / f"{'0' * 64}.tar").read_bytes() == b"archive"
    for path in installed.rglob("*"):
        assert path.stat().st_mode & 0o777 == (0o755 if path.is_dir() else 0o644), path


@pytest.mark.parametrize("given", [None, "missing"])
def test_safe_mode_stage_refuses_a_missing_bundle(tmp_path: Path, given: str | None):
    env = {} if given is None else {"FLEET_SAFE_MODE": str(tmp_path / given)}
    done = _install_safe_mode(tmp_path / "rootfs", env)
    assert done.returncode != 0
    assert not (tmp_path / "rootfs" / safemode.INSTALL_PATH).exists()


UPDATER_SCRIPT = STAGE_DIR / "03-updater/00-run.sh"


def _install_updater(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    """03-updater/00-run.sh with stand-ins for the wheelhouse, root.json and unit it copies."""
    wheels = tmp_path / "wheels"
    wheels.mkdir(exist_ok=True)
    (wheels / "metrica_fleet-0-py3-none-any.whl").write_bytes(b"wheel")
    (tmp_path / "root.json").write_text("{}")
    (tmp_path / "unit.service").write_text("[Unit]\n")
    (tmp_path / "rootfs/etc/systemd/system").mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        ["./" + UPDATER_SCRIPT.name],
        cwd=UPDATER_SCRIPT.parent,
        env={
            "PATH": os.environ["PATH"],
            "ROOTFS_DIR": str(tmp_path / "rootfs"),
            "FLEET_WHEELHOUSE": str(wheels),
            "FLEET_ROOT_JSON": str(tmp_path / "root.json"),
            "FLEET_UPDATER_UNIT": str(tmp_path / "unit.service"),
            **env,
        },
        capture_output=True,
    )


@pytest.mark.parametrize(
    ("encrypt", "word"), [(True, encrypteddata.LUKS), (False, encrypteddata.PLAIN)]
)
def test_the_build_config_data_setting_is_recorded_where_assemble_reads_it(
    tmp_path: Path, encrypt: bool, word: str
):
    cfg = config.load(FIXTURES / "build.yaml").model_copy(update={"encrypt_data": encrypt})
    done = _install_updater(tmp_path, stage_settings(cfg))
    assert done.returncode == 0, done.stderr
    rootfs = tmp_path / "rootfs"
    assert (rootfs / encrypteddata.SETTING_FILE).read_text() == f"{word}\n"
    assert encrypteddata.wanted(rootfs, None) is encrypt


def test_the_stage_refuses_an_unknown_data_setting(tmp_path: Path):
    done = _install_updater(tmp_path, {"FLEET_DATA_PARTITION": "zfs"})
    assert done.returncode != 0
    assert b"FLEET_DATA_PARTITION must be luks or ext4, not 'zfs'" in done.stderr
    assert not (tmp_path / "rootfs" / encrypteddata.SETTING_FILE).exists()
