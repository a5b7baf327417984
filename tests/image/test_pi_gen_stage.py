"""stage-fleet run by the real pi-gen: its run_stage, run_sub_stage and on_chroot, offline.

pi-gen's build.sh cannot run whole here: stage0 debootstraps Raspberry Pi OS from the network,
and it insists on host tools (quilt, parted, zerofree, ...) no other step needs. Its stage
machinery can: this test takes ``run_sub_stage`` and ``run_stage`` out of the checkout's
build.sh, sources its ``scripts/common`` (``on_chroot``, ``unmount``, ``log``) and runs
pi-gen-config/stage-fleet with them, as build.sh would after stage2, on a copy of the
debootstrap backend's cached base rootfs (every package of stage-fleet is already in it, so
``00-packages`` installs nothing). The pi-gen backend then unpacks the export step's tar.

The checkout: ``FLEET_PI_GEN_DIR`` if set, else a clone of ``FLEET_PI_GEN_GIT`` (default
https://github.com/RPi-Distro/pi-gen), branch bookworm-arm64. About 3 minutes (qemu-user).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from image import config, safemode
from image.backends import mounts, wheelhouse
from image.backends.base import STAGE_DIR, UPDATER_UNIT
from image.backends.debootstrap import DebootstrapBackend
from image.backends.pigen import BRANCH, EXPORT_NAME, PiGenBackend
from tests.image.conftest import FIXTURES, assert_safe_mode_shipped

pytestmark = [pytest.mark.integration, pytest.mark.pigen]

PI_GEN_GIT = "https://github.com/RPi-Distro/pi-gen"
# Sources pi-gen's own functions, then runs one stage the way build.sh's main loop does.
DRIVER = r"""
set -e
export BASE_DIR="$1" STAGE_DIR="$2"
export SCRIPT_DIR="${BASE_DIR}/scripts" LOG_FILE="${WORK_DIR}/build.log"
export CAPSH_ARG="--drop=cap_setfcap"
export STAGE STAGE_WORK_DIR PREV_STAGE PREV_STAGE_DIR ROOTFS_DIR PREV_ROOTFS_DIR
source "${SCRIPT_DIR}/common"
eval "$(sed -n '/^run_sub_stage()/,/^term()/p' "${BASE_DIR}/build.sh" | sed '$d')"
declare -F run_stage run_sub_stage >/dev/null
run_stage
"""


@pytest.fixture(scope="session")
def pi_gen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("FLEET_PI_GEN_DIR")
    if given:
        checkout = Path(given)
    else:
        checkout = tmp_path_factory.mktemp("pi-gen") / "pi-gen"
        url = os.environ.get("FLEET_PI_GEN_GIT", PI_GEN_GIT)
        clone = subprocess.run(
            ["git", "clone", "-q", "--depth", "1", "--branch", BRANCH, url, checkout],
            capture_output=True,
        )
        if clone.returncode != 0:
            pytest.fail(
                f"cannot clone pi-gen from {url}: {clone.stderr.decode().strip()}; "
                "set FLEET_PI_GEN_GIT (a clone URL or path) or FLEET_PI_GEN_DIR"
            )
    for needed in ("build.sh", "scripts/common", "scripts/remove-comments.sed"):
        assert (checkout / needed).is_file(), f"{checkout} is not a pi-gen checkout: no {needed}"
    return checkout


@pytest.fixture(scope="session")
def exported(pi_gen: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0:
        pytest.fail("pi-gen's stages need root (chroot, mounts): run it through scripts/test")
    work = tmp_path_factory.mktemp("pi-gen-work")
    cache = Path(os.environ.get("FLEET_IMAGE_CACHE", config.DEFAULT_CACHE))
    (work / "build.yaml").write_text(
        f"root_json: {FIXTURES / 'root.json'}\nhostname: metrica-pigen\ncache_dir: {cache}\n"
        f"pi_gen_dir: {pi_gen}\n"
    )
    cfg = config.load(work / "build.yaml")
    base = DebootstrapBackend(cfg)._base()
    pi_work, deploy, wheels = work / "work", work / "deploy", work / "wheels"
    rootfs = pi_work / STAGE_DIR.name / "rootfs"
    rootfs.parent.mkdir(parents=True)
    subprocess.run(["cp", "-a", "--reflink=auto", base, rootfs], check=True)
    wheels.mkdir()
    wheelhouse.build(wheels)
    env = {
        **os.environ,
        "WORK_DIR": str(pi_work),
        "DEPLOY_DIR": str(deploy),
        "IMG_NAME": "metrica-fleet",
        "RELEASE": "bookworm",
        "TARGET_HOSTNAME": cfg.hostname,
        "FLEET_WHEELHOUSE": str(wheels),
        "FLEET_SAFE_MODE": str(safemode.prepare(work / "safe-mode")),
        "FLEET_ROOT_JSON": str(cfg.root_json),
        "FLEET_UPDATER_UNIT": str(UPDATER_UNIT),
    }
    try:
        run = subprocess.run(
            ["bash", "-c", DRIVER, "pi-gen-stage", pi_gen, STAGE_DIR],
            env=env,
            capture_output=True,
        )
        log = (pi_work / "build.log").read_text() if (pi_work / "build.log").exists() else ""
        assert run.returncode == 0, run.stderr.decode()[-4000:]
        assert mounts.mounts_under(pi_work) == []  # pi-gen's run_stage unmounted its chroot
        # pi-gen ran every sub-stage, and every host script (it skips non-executable ones).
        for sub in ("00-packages", "01-readonly", "02-data", "03-updater", "04-watchdog"):
            assert f"End {STAGE_DIR}/{sub}" in log, log
        assert "Skip" not in log, log
        # The Compose v2 script ran under pi-gen's on_chroot; the debootstrap base it starts
        # from has the plugin already, so it checked it and fetched nothing (offline).
        assert f"End {STAGE_DIR}/00-packages/01-run-chroot.sh" in log, log
        assert f"End {STAGE_DIR}/03-updater/02-run.sh" in log, log
        assert ": present" in run.stdout.decode()
        return PiGenBackend(cfg)._unpack(deploy / EXPORT_NAME, work / "out")
    finally:
        mounts.unmount_under(pi_work)


def test_fleet_rootfs_from_pi_gen(exported: Path):
    venv = exported / "opt/metrica-fleet"
    commands = {
        p.name
        for p in (venv / "bin").iterdir()
        if not p.name.startswith(("python", "activate", "Activate"))
    }
    assert commands == {"fleet-updater"}
    etc = exported / "etc"
    assert (etc / "metrica-fleet/root.json").read_bytes() == (FIXTURES / "root.json").read_bytes()
    assert (etc / "systemd/system/multi-user.target.wants/fleet-updater.service").is_symlink()
    assert (etc / "hostname").readlink() == Path("/data/etc/hostname")
    assert (etc / "NetworkManager/system-connections").readlink() == Path(
        "/data/etc/NetworkManager/system-connections"
    )
    assert (etc / "mtab").readlink() == Path("/proc/mounts")
    assert (exported / "usr/share/metrica-fleet/hostname").read_text().strip() == "metrica-pigen"
    assert "PARTLABEL=data" in (etc / "fstab").read_text()
    # The chroot's tmpfs /tmp (on_chroot mounts one) did not end up in the tar.
    assert list((exported / "tmp").iterdir()) == []
    # The role manager's `docker compose` v2 plugin survived the export (ADR 0052).
    version = subprocess.run(
        ["chroot", exported, "docker", "compose", "version", "--short"],
        capture_output=True,
        check=True,
        timeout=300,  # a hang of the Go binary under qemu-user fails instead of blocking
    ).stdout.decode()
    assert version.strip().removeprefix("v").startswith("2."), version
    # The safe-mode stack with its image, the same as the debootstrap build ships (ADR 0059).
    assert_safe_mode_shipped(exported)
