"""The verity and encrypted-data initramfs scripts stage-fleet installs are POSIX sh (klibc's
sh runs them) and shellcheck-clean at warning level; the QEMU tier boots them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

FILES = Path(__file__).resolve().parents[2] / "pi-gen-config/stage-fleet/01-readonly/files"
SCRIPTS = ["fleet-verity", "fleet-verity-hook", "fleet-data-luks"]


def test_shellcheck_is_clean():
    tool = shutil.which("shellcheck")
    assert tool is not None, "shellcheck is in scripts/apt-packages.txt"
    subprocess.run(
        [tool, "-s", "sh", "-S", "warning", *(FILES / name for name in SCRIPTS)], check=True
    )
