"""aarch64 wheels of ``metrica-fleet[device]`` for an offline install in the image.

The project wheel is built on the host (it is pure Python); its dependencies are downloaded
for the Pi's platform with ``pip download --platform``, so nothing compiles under qemu-user.
pip builds the project in its source tree (setuptools' ``build/`` and ``*.egg-info``), so
builds from one tree take turns: two image builds at once failed with "Failed to build one
or more wheels".
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

from fleetcore.errors import CommandError
from fleetcore.filelock import held
from fleetcore.run import run
from image.backends.base import SOURCE_ROOT
from image.errors import BuildError

PLATFORMS = ("manylinux_2_36_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")
PYTHON_VERSION = "3.11"  # Debian bookworm's python3


def build(dest: Path) -> None:
    pip = [sys.executable, "-m", "pip"]
    try:
        with held(source_lock()):
            run([*pip, "wheel", "--quiet", "--no-deps", "-w", dest, SOURCE_ROOT])
        (wheel,) = dest.glob("metrica_fleet-*.whl")
        platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
        run(
            [
                *pip, "download", "--quiet", "--only-binary=:all:", *platforms,
                "--python-version", PYTHON_VERSION, "--implementation", "cp",
                "-d", dest, f"{wheel}[device]",
            ]
        )  # fmt: skip
    except (CommandError, ValueError) as err:
        raise BuildError(f"cannot gather aarch64 wheels of the updater: {err}") from err


def source_lock() -> Path:
    """The lock that serialises project wheel builds from this source tree (outside the
    tree, which may be read-only)."""
    key = hashlib.sha256(str(SOURCE_ROOT.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"metrica-fleet-wheel-{key}.lock"
