"""Mount points below a build folder: find them, unmount them, and never delete through one.

A build that was killed (SIGKILL, power loss) can leave the chroot's /proc, /sys, /dev and
/dev/pts mounted under its work folder. Deleting that folder with a plain ``rmtree`` would walk
into the bind-mounted /dev of the host, so every removal of a build folder goes through
:func:`remove_tree`, which unmounts first and refuses if anything stays mounted.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from fleetcore.errors import CommandError
from fleetcore.run import run
from image.errors import BuildError

MOUNTINFO = Path("/proc/self/mountinfo")
_ESCAPE = re.compile(r"\\([0-7]{3})")
# A stacked mount point needs one umount per layer; more layers than this is not a build's.
_MAX_ROUNDS = 8


def mounts_under(path: Path, mountinfo: Path = MOUNTINFO) -> list[Path]:
    """Mount points at or below ``path``, deepest first."""
    root = path.resolve()
    found = set()
    for line in mountinfo.read_text().splitlines():
        target = Path(_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), line.split(" ")[4]))
        if target == root or root in target.parents:
            found.add(target)
    return sorted(found, key=lambda p: (len(p.parts), str(p)), reverse=True)


def umount(target: Path) -> None:
    """Unmount ``target``; a busy mount is detached lazily as the last resort."""
    try:
        run(["umount", target])
    except CommandError:
        run(["umount", "--lazy", target], check=False)


def unmount_under(path: Path) -> None:
    """Unmount everything mounted at or below ``path``; fail if something stays."""
    for _ in range(_MAX_ROUNDS):
        targets = mounts_under(path)
        if not targets:
            return
        for target in targets:
            umount(target)
    left = mounts_under(path)
    if left:
        raise BuildError(
            f"cannot unmount {left[0]}",
            hint=f"unmount it by hand (umount -R {left[0]}), then run the build again",
        )


def remove_tree(path: Path) -> None:
    """Delete a build folder, unmounting whatever is mounted inside it first."""
    if not path.exists() and not path.is_symlink():
        return
    unmount_under(path)
    shutil.rmtree(path)
