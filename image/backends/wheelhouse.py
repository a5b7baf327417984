"""aarch64 wheels of ``metrica-fleet[device]`` for an offline install in the image.

The project wheel is built on the host (it is pure Python); its dependencies are downloaded
for the Pi's platform with ``pip download --platform``, so nothing compiles under qemu-user.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fleetcore.errors import CommandError
from fleetcore.run import run
from image.backends.base import SOURCE_ROOT
from image.errors import BuildError

PLATFORMS = ("manylinux_2_36_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")
PYTHON_VERSION = "3.11"  # Debian bookworm's python3


def build(dest: Path) -> None:
    pip = [sys.executable, "-m", "pip"]
    try:
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
