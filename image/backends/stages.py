"""Run a pi-gen stage folder the way pi-gen does, outside pi-gen.

For each sub-stage (sorted ``NN-name`` folders) pi-gen runs ``NN-run.sh`` on the host with
ROOTFS_DIR set and its folder as working directory, and feeds ``NN-run-chroot.sh`` to bash in
the chroot. Package lists (``NN-packages``) are installed by the caller beforehand.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from fleetcore.errors import CommandError
from fleetcore.run import run
from image.errors import BuildError
from image.progress import step

PACKAGE_LIST = "00-packages"


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


def run_stage(
    stage: Path, rootfs: Path, env: Mapping[str, str], *, skip: frozenset[str] = frozenset()
) -> None:
    """Run the host and chroot scripts of every sub-stage not named in ``skip``."""
    full_env = {**env, "ROOTFS_DIR": str(rootfs)}
    for sub in substages(stage):
        if sub.name in skip:
            continue
        with step(f"stage {stage.name}/{sub.name}"):
            for script in sorted(sub.glob("[0-9][0-9]-run*.sh")):
                try:
                    if script.name.endswith("-run-chroot.sh"):
                        run(
                            ["chroot", rootfs, "/bin/bash", "-e", "-s"],
                            input=script.read_bytes(),
                            env=full_env,
                        )
                    else:
                        run(["/bin/bash", "-e", script], env=full_env, cwd=sub)
                except CommandError as err:
                    raise BuildError(
                        f"stage script {sub.name}/{script.name} failed: {err}"
                    ) from err
