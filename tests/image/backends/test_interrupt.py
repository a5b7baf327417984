"""An interrupted or killed ``fleet-image build`` leaves no mounts and no partial output.

The real CLI and debootstrap backend run in a child process on a tiny cached base; only the
wheel download and the stage scripts are replaced: the stage step, which runs with the
chroot's /proc, /sys, /dev and /dev/pts mounted, announces itself and then hangs (or fails),
or runs a command whose own child keeps writing into the rootfs (as debootstrap's dpkg does).
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from image.backends import mounts
from image.backends.debootstrap import DebootstrapBackend
from image.config import load
from tests.image.conftest import FIXTURES

pytestmark = pytest.mark.integration

DRIVER = """
import sys, time
from pathlib import Path
from fleetcore.run import run
from image.backends import stages, wheelhouse
from image.cli import main
from image.errors import BuildError

marker, mode = Path(sys.argv[1]), sys.argv[2]

def fake_stage(stage, rootfs, env, *, skip=frozenset()):
    marker.write_text(str(rootfs))
    if mode == "fail":
        raise BuildError("stage failed on purpose")
    if mode == "writer":
        writer = f"while :; do mkdir -p {rootfs}/busy/$(date +%N); sleep 0.01; done"
        run(["sh", "-c", f"({writer}) & echo $! > {marker}.writer; wait"])
    time.sleep(300)

wheelhouse.build = lambda dest: None
stages.run_stage = fake_stage
sys.exit(main(sys.argv[3:]))
"""


@pytest.fixture
def workdir(tmp_path: Path, require_root: None) -> Iterator[Path]:
    """A build folder with a config whose cache holds a (tiny) base rootfs."""
    (tmp_path / "root.json").write_bytes((FIXTURES / "root.json").read_bytes())
    (tmp_path / "build.yaml").write_text("root_json: root.json\ncache_dir: cache\n")
    key = DebootstrapBackend(load(tmp_path / "build.yaml")).cache_key()
    base = tmp_path / "cache" / key / "rootfs"
    for folder in ("etc", "usr/sbin", "boot/firmware", "proc", "sys", "dev"):
        (base / folder).mkdir(parents=True)
    (base / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\nexit 101\n")
    (tmp_path / "driver.py").write_text(DRIVER)
    try:
        yield tmp_path
    finally:
        mounts.unmount_under(tmp_path)


def _start(workdir: Path, marker: Path, mode: str) -> subprocess.Popen[bytes]:
    # --out is relative on purpose: the build must resolve it (stage scripts run elsewhere).
    argv = ["build", "--backend", "debootstrap", "--config", "build.yaml", "--out", "out"]
    return subprocess.Popen(
        [sys.executable, "driver.py", str(marker), mode, *argv],
        cwd=workdir,
        stderr=subprocess.PIPE,
    )


def _wait_for(marker: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"the build ended early: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the build never reached its stage step")
        time.sleep(0.1)


def _assert_clean(workdir: Path) -> None:
    assert mounts.mounts_under(workdir) == []
    assert not (workdir / "out/.rootfs.partial").exists()
    assert not (workdir / "out/rootfs").exists()
    assert Path("/dev/null").exists()  # the host's /dev survived the clean-up


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_unmounts_and_removes_partial_output(workdir: Path, sig: signal.Signals):
    marker = workdir / "in-stage"
    proc = _start(workdir, marker, "hang")
    _wait_for(marker, proc)
    rootfs = Path(marker.read_text())
    assert rootfs.is_absolute() and rootfs.parent == workdir / "out"
    mounted = {p.relative_to(rootfs).as_posix() for p in mounts.mounts_under(rootfs)}
    assert mounted == {"proc", "sys", "dev", "dev/pts"}

    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert f"fleet-image: error: build interrupted by {sig.name}" in stderr.decode()
    _assert_clean(workdir)


def test_a_signal_stops_the_stage_commands_children_before_the_clean_up(workdir: Path):
    marker = workdir / "in-stage"
    proc = _start(workdir, marker, "writer")
    _wait_for(marker, proc)
    pidfile = workdir / "in-stage.writer"
    while not pidfile.exists() or not pidfile.read_text().strip():
        time.sleep(0.05)
    writer = int(pidfile.read_text())

    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert "fleet-image: error: build interrupted by SIGTERM" in stderr.decode()
    assert proc.returncode == 1
    assert not Path(f"/proc/{writer}").exists() or _zombie(writer)
    _assert_clean(workdir)


def _zombie(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_rerun_cleans_up_after_a_killed_build(workdir: Path):
    marker = workdir / "in-stage"
    proc = _start(workdir, marker, "hang")
    _wait_for(marker, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert mounts.mounts_under(workdir / "out")  # SIGKILL: nothing could clean up

    again = workdir / "in-stage-again"
    proc = _start(workdir, again, "fail")
    _, stderr = proc.communicate(timeout=120)
    assert again.exists(), stderr.decode()  # the re-run got past the stale folder
    assert proc.returncode == 1
    assert "stage failed on purpose" in stderr.decode()
    _assert_clean(workdir)
