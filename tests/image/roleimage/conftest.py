"""Synthetic Debian packages for the builder's unit tests (``dpkg-deb --build``, no root)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from fleetcore.run import run
from image.roleimage.apt import Deb, PackageRef

FIXTURES = Path(__file__).parent / "fixtures"

# path -> file content, or ("symlink", target), or ("hardlink", path in the same package),
# or ("dir",)
Content = Mapping[str, bytes | tuple[str, ...]]
MakeDeb = Callable[..., Deb]


def _write(root: Path, files: Content) -> None:
    links_last = sorted(files.items(), key=lambda item: (item[1][0] == "hardlink", item[0]))
    for name, content in links_last:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content[0] == "symlink":
            path.symlink_to(content[1])
        elif content[0] == "hardlink":
            os.link(root / content[1], path)
        else:
            path.mkdir(exist_ok=True)


@pytest.fixture
def make_deb(tmp_path: Path) -> MakeDeb:
    """Build ``name_version_arm64.deb`` holding ``files`` (owned by root, as in the archive)."""
    if shutil.which("dpkg-deb") is None:
        pytest.fail("dpkg-deb is missing (package dpkg)")

    def make(name: str, files: Content, *, version: str = "1.0-1") -> Deb:
        root = tmp_path / "debs" / f"{name}-{version}"
        (root / "DEBIAN").mkdir(parents=True)
        (root / "DEBIAN" / "control").write_text(
            f"Package: {name}\nVersion: {version}\nArchitecture: arm64\n"
            "Maintainer: Test <test@example.org>\nDescription: test package\n"
        )
        _write(root, files)
        out = tmp_path / "debs" / f"{name}_{version}_arm64.deb"
        run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", root, out])
        return Deb(PackageRef(name, version, "arm64"), out)

    return make
