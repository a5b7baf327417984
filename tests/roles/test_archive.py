"""Packing bundles as tar.zst targets and unpacking them safely."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import zstandard

from fleetcore.rolebundle.bundle import load_bundle
from fleetcore.rolebundle.errors import ArchiveError, BundleError
from updater.roles.archive import extract, pack

from .helpers import GOOD, make_bundle


def zst_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    path.write_bytes(zstandard.ZstdCompressor().compress(raw.getvalue()))
    return path


def member(name: str, *, kind: bytes = tarfile.REGTYPE, data: bytes = b"x", link: str = ""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    return info, None


def test_pack_then_extract_round_trips(tmp_path):
    pack(GOOD, tmp_path / "a.tar.zst")
    extract(tmp_path / "a.tar.zst", tmp_path / "out")
    bundle = load_bundle(tmp_path / "out")
    assert bundle.spec.name == "webapp"
    assert (tmp_path / "out" / "config" / "start.sh").read_bytes() == (
        GOOD / "config" / "start.sh"
    ).read_bytes()


def test_pack_is_reproducible(tmp_path):
    copy = make_bundle(tmp_path / "copy")
    pack(GOOD, tmp_path / "a.tar.zst")
    pack(copy, tmp_path / "b.tar.zst")
    assert (tmp_path / "a.tar.zst").read_bytes() == (tmp_path / "b.tar.zst").read_bytes()


def test_pack_levels_change_size_not_content(tmp_path):
    pack(GOOD, tmp_path / "fast.tar.zst", level=1)
    pack(GOOD, tmp_path / "small.tar.zst")
    for name in ("fast", "small"):
        extract(tmp_path / f"{name}.tar.zst", tmp_path / name)
    assert (tmp_path / "fast" / "role.yaml").read_bytes() == (GOOD / "role.yaml").read_bytes()
    assert (tmp_path / "fast.tar.zst").read_bytes() != (tmp_path / "small.tar.zst").read_bytes()


@pytest.mark.parametrize("level", [0, 23])
def test_pack_refuses_an_unknown_level(tmp_path, level):
    with pytest.raises(BundleError, match=f"zstd level {level} is outside 1-22"):
        pack(GOOD, tmp_path / "x.tar.zst", level=level)
    assert not (tmp_path / "x.tar.zst").exists()


def test_pack_refuses_an_invalid_bundle(tmp_path):
    with pytest.raises(BundleError, match="no healthcheck"):
        pack(Path(__file__).parent / "fixtures" / "bad" / "no-healthcheck", tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("image", ["sha256:" + "0" * 64, "example.org/mpd:1@sha256:" + "0" * 64])
def test_pack_refuses_a_placeholder_digest(tmp_path, image):
    with pytest.raises(BundleError, match="placeholder digest"):
        pack(make_bundle(tmp_path / "b", image=image), tmp_path / "b.tar.zst")
    assert not (tmp_path / "b.tar.zst").exists()


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([member("../evil")], "escapes the bundle"),
        ([member("config/../../evil")], "escapes the bundle"),
        ([member("/etc/evil")], "absolute"),
        ([member("config/l", kind=tarfile.SYMTYPE, link="../../etc/passwd")], "escapes"),
        ([member("config/l", kind=tarfile.SYMTYPE, link="/etc/passwd")], "is absolute"),
        ([member("role.yaml"), member("h", kind=tarfile.LNKTYPE, link="role.yaml")], "hard link"),
        ([member("dev", kind=tarfile.CHRTYPE)], "device node"),
        ([member("blk", kind=tarfile.BLKTYPE)], "device node"),
        ([member("fifo", kind=tarfile.FIFOTYPE)], "device node, fifo"),
    ],
    ids=[
        "parent",
        "nested-parent",
        "absolute",
        "link-out",
        "link-abs",
        "hardlink",
        "chr",
        "blk",
        "fifo",
    ],
)
def test_unsafe_archives_are_refused(tmp_path, members, message):
    archive = zst_tar(tmp_path / "bad.tar.zst", members)
    with pytest.raises(ArchiveError, match=message):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil").exists()


def test_size_cap(tmp_path):
    archive = zst_tar(tmp_path / "big.tar.zst", [member("big", data=b"\0" * 200_000)])
    with pytest.raises(ArchiveError, match="larger than"):
        extract(archive, tmp_path / "out", max_bytes=100_000)


def test_member_cap(tmp_path):
    archive = zst_tar(tmp_path / "many.tar.zst", [member(f"f{i}") for i in range(20)])
    with pytest.raises(ArchiveError, match="more than 10 members"):
        extract(archive, tmp_path / "out", max_members=10)


def test_not_an_archive(tmp_path):
    (tmp_path / "junk.tar.zst").write_bytes(b"not zstd at all")
    with pytest.raises(ArchiveError, match=r"not a valid tar\.zst"):
        extract(tmp_path / "junk.tar.zst", tmp_path / "out")


def test_extract_clamps_modes_without_the_stdlib_filters(tmp_path):
    """Extraction never uses tarfile's filters (bookworm's 3.11.2 has none): set-id bits and
    group/other write are dropped by the own writer."""
    info, data = member("config/tool", data=b"#!/bin/sh\n")
    info.mode = 0o4777
    archive = zst_tar(tmp_path / "a.tar.zst", [(info, data)])
    extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "config" / "tool").stat().st_mode & 0o7777 == 0o755
    bad = zst_tar(tmp_path / "b.tar.zst", [member("../evil")])
    with pytest.raises(ArchiveError, match="escapes"):
        extract(bad, tmp_path / "out2")


def test_image_archives_have_their_own_size_cap(tmp_path):
    archive = zst_tar(
        tmp_path / "img.tar.zst",
        [member("images", kind=tarfile.DIRTYPE), member("images/a.tar", data=b"\0" * 200_000)],
    )
    extract(archive, tmp_path / "ok", max_bytes=100_000, max_image_bytes=300_000)
    with pytest.raises(ArchiveError, match="its image archives are larger than 100000 bytes"):
        extract(archive, tmp_path / "out", max_bytes=300_000, max_image_bytes=100_000)
