"""Run a pi-gen stage folder the way pi-gen's build.sh does, outside pi-gen.

pi-gen (``run_stage`` and ``run_sub_stage`` in build.sh, RPi-Distro/pi-gen bookworm-arm64)
runs every sub-stage folder without a ``SKIP`` file, in name order; within one it goes through
the prefixes 00..99 and for each runs ``NN-run.sh`` on the host (only if it is executable,
with ROOTFS_DIR set and the sub-stage as working directory), then feeds ``NN-run-chroot.sh``
to ``bash -e`` in the chroot. Package lists (``NN-packages``) are installed by the caller
beforehand; a stage using pi-gen features this runner lacks (debconf, ``-packages-nr``,
quilt patches) is refused rather than half-run.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from fleetcore.errors import CommandError
from fleetcore.run import run
from image.errors import BuildError
from image.progress import step

# The sub-stage that installs packages: its list, and scripts completing the installation.
PACKAGES_SUBSTAGE = "00-packages"
SKIP = "SKIP"
# pi-gen features this runner does not emulate: NN-debconf, NN-packages-nr, NN-patches/.
_UNSUPPORTED = ("-debconf", "-packages-nr", "-patches")


def substages(stage: Path) -> list[Path]:
    return sorted(p for p in stage.iterdir() if p.is_dir() and p.name[:2].isdigit())


def package_lists(stage: Path) -> list[str]:
    """Every package named in the stage's ``NN-packages`` files, in order."""
    names: list[str] = []
    for sub in substages(stage):
        for listing in sorted(sub.glob("[0-9][0-9]-packages")):
            for line in listing.read_text().splitlines():
                names += line.split("#", 1)[0].split()
    return names


def scripts(sub: Path) -> list[Path]:
    """The sub-stage's scripts in pi-gen's order: per prefix, run.sh before run-chroot.sh."""
    found = []
    for prefix in (f"{i:02d}" for i in range(100)):
        for unsupported in _UNSUPPORTED:
            if (sub / f"{prefix}{unsupported}").exists():
                raise BuildError(f"{sub.name}/{prefix}{unsupported}: not supported outside pi-gen")
        host = sub / f"{prefix}-run.sh"
        if host.is_file():
            if not host.stat().st_mode & 0o100:
                # pi-gen would skip it silently; fail here so CI catches it.
                raise BuildError(f"{sub.name}/{host.name} is not executable: pi-gen skips it")
            found.append(host)
        chroot = sub / f"{prefix}-run-chroot.sh"
        if chroot.is_file():
            found.append(chroot)
    return found


def run_stage(
    stage: Path, rootfs: Path, env: Mapping[str, str], *, skip: frozenset[str] = frozenset()
) -> None:
    """Run the host and chroot scripts of every sub-stage not named in ``skip``."""
    for sub in substages(stage):
        if sub.name not in skip:
            run_substage(sub, rootfs, env)


def run_substage(sub: Path, rootfs: Path, env: Mapping[str, str]) -> None:
    """Run one sub-stage's host and chroot scripts, unless it holds a ``SKIP`` file."""
    if (sub / SKIP).exists():
        return
    rootfs = rootfs.resolve()
    full_env = {**env, "ROOTFS_DIR": str(rootfs)}
    with step(f"stage {sub.parent.name}/{sub.name}"):
        for script in scripts(sub):
            try:
                if script.name.endswith("-run-chroot.sh"):
                    run(
                        ["chroot", rootfs, "/bin/bash", "-e", "-s"],
                        input=script.read_bytes(),
                        env=full_env,
                    )
                else:
                    run([f"./{script.name}"], env=full_env, cwd=sub)
            except CommandError as err:
                raise BuildError(f"stage script {sub.name}/{script.name} failed: {err}") from err
