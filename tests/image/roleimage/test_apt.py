"""The apt side: sources, the simulation parser, file names; and the cache against Debian."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from image.roleimage import apt, recipe
from image.roleimage.errors import PackageError

from .conftest import FIXTURES


def test_sources_are_signed_and_arch_bound():
    loaded = recipe.parse({"name": "x", "packages": ["mpd"], "cmd": ["mpd"]}, source="t")
    lines = apt.sources(loaded, recipe.Arch.ARM64).splitlines()
    opts = f"[arch=arm64 signed-by={apt.KEYRING}]"
    assert lines == [
        f"deb {opts} http://deb.debian.org/debian bookworm main",
        f"deb {opts} http://deb.debian.org/debian bookworm-updates main",
        f"deb {opts} http://deb.debian.org/debian-security bookworm-security main",
    ]
    plain = loaded.model_copy(update={"updates": False, "security_mirror": None})
    assert apt.sources(plain, recipe.Arch.AMD64).splitlines() == [
        f"deb [arch=amd64 signed-by={apt.KEYRING}] http://deb.debian.org/debian bookworm main"
    ]


def test_simulation_lists_what_would_be_unpacked():
    refs = apt.parse_simulation((FIXTURES / "apt-simulation.txt").read_text())
    assert refs == [
        apt.PackageRef("busybox-static", "1:1.35.0-4+deb12u1+b1", "arm64"),
        apt.PackageRef("libc6", "2.36-9+deb12u14", "arm64"),
        apt.PackageRef("perl-modules-5.36", "5.36.0-7+deb12u4", "all"),
        apt.PackageRef("zlib1g", "1:1.2.13.dfsg-1", "arm64"),
    ]


def test_file_names_encode_the_epoch():
    ref = apt.PackageRef("zlib1g", "1:1.2.13.dfsg-1", "arm64")
    assert apt.deb_filename(ref) == "zlib1g_1%3a1.2.13.dfsg-1_arm64.deb"
    assert ref.pin == "zlib1g=1:1.2.13.dfsg-1"


@pytest.mark.integration
def test_the_cache_keeps_only_what_the_index_offers(tmp_path: Path, require_root: None) -> None:
    """Against Debian's archive: a package superseded there is dropped at the next update."""
    loaded = recipe.parse(
        {"name": "x", "packages": ["busybox-static"], "cmd": ["/bin/busybox"], "updates": False},
        source="t",
    )
    root = apt.AptRoot(tmp_path / "cache", loaded, recipe.Arch.ARM64)
    root.update()
    [deb] = root.download(root.resolve(loaded.packages))
    superseded = root.archives / "busybox-static_1%3a0.1-1_arm64.deb"
    superseded.write_bytes(deb.path.read_bytes())
    root.update()
    assert deb.path.exists()
    assert not superseded.exists()


def test_builds_sharing_an_apt_folder_take_turns(tmp_path: Path):
    """Two builders of one apt folder (CI's tiers run side by side): the second waits for the
    first, rather than failing on apt's archives lock or losing a .deb to its autoclean."""
    root = tmp_path / "cache" / "bookworm-arm64"
    child = [
        sys.executable,
        "-c",
        "import sys; from pathlib import Path; from image.roleimage.apt import shared_cache\n"
        "with shared_cache(Path(sys.argv[1])): print('in', flush=True)",
        str(root),
    ]
    with apt.shared_cache(root):
        waiting = subprocess.Popen(child, stdout=subprocess.PIPE, text=True)
        with pytest.raises(subprocess.TimeoutExpired):
            waiting.communicate(timeout=1.0)
    out, _ = waiting.communicate(timeout=30)
    assert (waiting.returncode, out) == (0, "in\n")


def test_an_unusable_cache_folder_is_one_error(tmp_path: Path):
    (tmp_path / "file").write_text("")
    unusable = apt.shared_cache(tmp_path / "file" / "bookworm-arm64")
    with pytest.raises(PackageError, match="cannot lock .* for apt's lists"), unusable:
        pass
