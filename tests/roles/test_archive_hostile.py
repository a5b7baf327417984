"""Known-bad role bundle archives: links, traversal, specials, duplicates, huge headers.

Each archive is built deterministically here (the members are the fixture). Every case must
raise ``ArchiveError`` and leave nothing outside the destination, on the device's Python
(bookworm's 3.11.2, no ``tarfile.data_filter``) as on the development one.
"""

from __future__ import annotations

import contextlib
import io
import posixpath
import tarfile
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetcore.rolebundle.errors import ArchiveError, BundleError
from updater.roles.archive import extract, pack

from .helpers import GOOD

DIR, SYM, LNK, CHR, FIFO = (
    tarfile.DIRTYPE,
    tarfile.SYMTYPE,
    tarfile.LNKTYPE,
    tarfile.CHRTYPE,
    tarfile.FIFOTYPE,
)


def info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", data: bytes = b"x"):
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = link
    member.mode = 0o755 if kind == DIR else 0o644
    if kind == tarfile.REGTYPE:
        member.size = len(data)
        return member, data
    return member, None


def tar_bytes(members, fmt=tarfile.PAX_FORMAT) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as tar:
        for member, data in members:
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return raw.getvalue()


def zst(path: Path, data: bytes) -> Path:
    path.write_bytes(zstandard.ZstdCompressor().compress(data))
    return path


def cve_2025_4517_members():
    """The published pattern: directories named near PATH_MAX/16 and links to them, so a
    realpath() check and the kernel disagree about where the final link points."""
    comp = "d" * 247
    steps = "abcdefghijklmnop"
    members, path, step_path = [], "", ""
    for step in steps:
        members.append(info(posixpath.join(path, comp), DIR))
        members.append(info(posixpath.join(path, step), SYM, comp))
        path = posixpath.join(path, comp)
        step_path = posixpath.join(step_path, step)
    long_link = posixpath.join(step_path, "l" * 254)
    members.append(info(long_link, SYM, "../" * len(steps)))
    members.append(info("escape", SYM, long_link + "/" + "../" * 2))
    members.append(info("escape/escaped", data=b"owned"))
    return members


HOSTILE = {
    "symlink-chain-escape": [
        info("a/b", DIR),
        info("a/b/up", SYM, ".."),
        info("x", SYM, "a/b/up/../.."),
        info("x/escaped", data=b"owned"),
    ],
    "symlink-then-file-through-it": [info("l", SYM, "."), info("l/escaped", data=b"x")],
    "symlink-to-outside-then-file": [info("l", SYM, "a/../.."), info("l/escaped")],
    "cve-2025-4517": cve_2025_4517_members(),
    "hard-link": [info("role.yaml"), info("h", LNK, "role.yaml")],
    "hard-link-outside": [info("h", LNK, "../../etc/passwd")],
    "absolute-name": [info("/tmp/escaped")],
    "dotdot-name": [info("../escaped")],
    "dotdot-inside-name": [info("a/../../escaped")],
    "absolute-link": [info("l", SYM, "/etc")],
    "link-to-link": [info("f"), info("l1", SYM, "f"), info("l2", SYM, "l1")],
    "dangling-link": [info("l", SYM, "missing")],
    "duplicate-file-then-symlink": [info("f"), info("f", SYM, "g"), info("g")],
    "duplicate-symlink-then-file": [info("g"), info("f", SYM, "g"), info("f")],
    "duplicate-file": [info("f", data=b"1"), info("f", data=b"2")],
    "file-then-dir-under-it": [info("f"), info("f/g")],
    "device-node": [info("dev", CHR)],
    "fifo": [info("pipe", FIFO)],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused_and_nothing_escapes(tmp_path, case):
    outside = tmp_path / "outside"
    dest = outside / "stage" / "dest"
    dest.mkdir(parents=True)
    archive = zst(tmp_path / "bad.tar.zst", tar_bytes(HOSTILE[case]))
    with pytest.raises(ArchiveError):
        extract(archive, dest)
    escaped = [
        path
        for path in outside.rglob("*")
        if not path.is_relative_to(dest) and path != dest.parent and path != dest
    ]
    assert escaped == []
    assert not Path("/tmp/escaped").exists()
    # No link the extraction created may point out of dest (links are made last, and only
    # once every one was checked).
    for path in dest.rglob("*"):
        if path.is_symlink():
            assert path.resolve().is_relative_to(dest.resolve())


def raw_header(name: bytes, kind: bytes, size: int) -> bytes:
    """One ustar header block claiming ``size`` bytes of data, with a correct checksum."""
    block = bytearray(512)
    block[0 : len(name)] = name
    block[100:108] = b"0000644\0"
    block[108:116] = b"0000000\0"
    block[116:124] = b"0000000\0"
    block[124:136] = f"{size:011o}\0".encode()
    block[136:148] = b"00000000000\0"
    block[156:157] = kind
    block[257:263] = b"ustar\0"
    block[263:265] = b"00"
    block[148:156] = b" " * 8
    block[148:156] = f"{sum(block):06o}\0 ".encode()
    return bytes(block)


@pytest.mark.parametrize("kind", [b"x", b"L", b"K"])
def test_huge_extended_header_is_refused_before_it_is_read(tmp_path, kind):
    # 150 MiB claimed, only a few KB present: the old reader allocated the whole claim.
    data = raw_header(b"././@PaxHeader", kind, 150 * 1024 * 1024) + b"9" * 4096
    archive = zst(tmp_path / "bomb.tar.zst", data)
    with pytest.raises(ArchiveError, match="extended header of 157286400 bytes exceeds"):
        extract(archive, tmp_path / "dest")


def test_global_pax_header_and_bad_checksum_are_refused(tmp_path):
    data = raw_header(b"g", b"g", 10) + b"10 a=bcde\n".ljust(512, b"\0")
    with pytest.raises(ArchiveError, match="global PAX"):
        extract(zst(tmp_path / "g.tar.zst", data), tmp_path / "g")
    block = bytearray(raw_header(b"f", b"0", 0))
    block[0] = ord("g")
    with pytest.raises(ArchiveError, match="checksum"):
        extract(zst(tmp_path / "c.tar.zst", bytes(block)), tmp_path / "c")


def test_long_names_and_links_inside_still_extract(tmp_path):
    long = "config/" + "n" * 150
    members = [
        info("config", DIR),
        info(long, data=b"long"),
        info("config/link", SYM, "n" * 150),
        info("top", SYM, "config"),
    ]
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        dest = tmp_path / str(fmt)
        extract(zst(tmp_path / f"{fmt}.tar.zst", tar_bytes(members, fmt)), dest)
        assert (dest / long).read_bytes() == b"long"
        assert (dest / "config" / "link").readlink() == Path("n" * 150)
        assert (dest / "top" / "link").read_bytes() == b"long"


def test_existing_link_in_dest_is_not_followed(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    (tmp_path / "victim").mkdir()
    (dest / "config").symlink_to(tmp_path / "victim")
    archive = zst(tmp_path / "a.tar.zst", tar_bytes([info("config/f")]))
    with pytest.raises(ArchiveError, match="not a directory"):
        extract(archive, dest)
    assert list((tmp_path / "victim").iterdir()) == []


def _good_tar(tmp_path_factory) -> bytes:
    out = tmp_path_factory.mktemp("good") / "a.tar.zst"
    pack(GOOD, out)
    return zstandard.ZstdDecompressor().decompress(out.read_bytes(), max_output_size=1 << 24)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_bundle_never_escapes_nor_crashes(tmp_path_factory, data):
    good = _good_tar(tmp_path_factory)
    mutated = bytearray(good)
    for _ in range(data.draw(st.integers(1, 8))):
        where = data.draw(st.integers(0, len(mutated) - 1))
        mutated[where] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        mutated = mutated[: data.draw(st.integers(0, len(mutated)))]
    root = tmp_path_factory.mktemp("fuzz")
    dest = root / "dest"
    archive = root / "m.tar.zst"
    if data.draw(st.booleans()):
        zst(archive, bytes(mutated))
    else:
        archive.write_bytes(bytes(mutated))
    with contextlib.suppress(BundleError):
        extract(archive, dest)
    assert [p for p in root.rglob("*") if not p.is_relative_to(dest) and p != archive] == []
    for path in dest.rglob("*"):
        if path.is_symlink():
            assert path.resolve().is_relative_to(dest.resolve())
