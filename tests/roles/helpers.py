"""Building test bundles from the checked-in fixtures."""

from __future__ import annotations

import shutil
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
GOOD = FIXTURES / "good" / "webapp"
BAD = FIXTURES / "bad"
PLACEHOLDER_IMAGE = "sha256:" + "1" * 64
REPO = Path(__file__).resolve().parents[2]


def make_bundle(
    dest: Path, *, image: str = PLACEHOLDER_IMAGE, version: str = "1.0.0", healthy: bool = True
) -> Path:
    """A copy of the webapp fixture at ``version``; ``healthy=False`` probes the wrong port."""
    shutil.copytree(GOOD, dest, symlinks=True)
    role = (dest / "role.yaml").read_text()
    (dest / "role.yaml").write_text(
        role.replace(PLACEHOLDER_IMAGE, image).replace("version: 1.0.0", f"version: {version}")
    )
    compose = (dest / "compose.yaml").read_text().replace(PLACEHOLDER_IMAGE, image)
    if not healthy:
        compose = compose.replace("127.0.0.1:8080/", "127.0.0.1:8081/")
    (dest / "compose.yaml").write_text(compose)
    return dest
