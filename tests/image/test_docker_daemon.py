"""The image's dockerd configuration (stage-fleet 02-data): everything dockerd writes lies on
/data, since the root is a read-only system slot.

Bookworm's docker.io (20.10) writes its identity key to /etc/docker/key.json at its first
start unless ``deprecated-key-path`` moves it; on the read-only root it then exits with
"Error saving key file ... read-only file system" (seen in the qemu tier's guest). And with
AppArmor enabled in the kernel (Debian's kernel does), dockerd starts no container without
``apparmor_parser``, which docker.io only recommends.
"""

from __future__ import annotations

import json
from pathlib import Path

DAEMON_JSON = (
    Path(__file__).resolve().parents[2]
    / "pi-gen-config/stage-fleet/02-data/files/docker-daemon.json"
)
PACKAGES = Path(__file__).resolve().parents[2] / "pi-gen-config/stage-fleet/00-packages/00-packages"
WRITTEN_PATHS = ("data-root", "deprecated-key-path")


def test_dockerd_writes_only_below_data() -> None:
    config = json.loads(DAEMON_JSON.read_text())
    for key in WRITTEN_PATHS:
        assert Path(config[key]).is_relative_to("/data"), (key, config[key])
    assert "exec-root" not in config  # /run, a tmpfs


def test_apparmor_parser_is_installed_with_docker() -> None:
    packages = PACKAGES.read_text().split()
    assert "docker.io" in packages
    assert "apparmor" in packages
