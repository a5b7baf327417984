"""Reading DT_NEEDED/DT_RUNPATH, and following the image's program through its libraries."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from image.roleimage import elf, loader
from image.roleimage.apt import data_tar
from image.roleimage.errors import TreeError
from image.roleimage.recipe import Arch
from image.roleimage.tree import Entry, Tree

HOST_TRUE = Path("/usr/bin/true")


def make_elf(needed: tuple[str, ...] = (), runpath: str | None = None) -> bytes:
    """A minimal ELF64 LE shared object: one PT_LOAD over the file, one PT_DYNAMIC."""
    strings = b"\0"
    offsets = []
    for name in (*needed, *([runpath] if runpath else [])):
        offsets.append(len(strings))
        strings += name.encode() + b"\0"
    header, phdr, dyn = 64, 56, 16
    tags = [(1, off) for off in offsets[: len(needed)]]
    if runpath:
        tags.append((29, offsets[-1]))
    dyn_off = header + 2 * phdr
    str_off = dyn_off + (len(tags) + 2) * dyn
    vaddr = 0x10000  # the string table's address differs from its file offset
    tags = [*tags, (5, vaddr + str_off), (0, 0)]
    size = str_off + len(strings)
    out = bytearray(b"\x7fELF\x02\x01\x01" + bytes(9))
    out += struct.pack("<HHIQQQIHHHHHH", 3, 183, 1, 0, header, 0, 0, header, phdr, 2, 64, 0, 0)
    out += struct.pack("<IIQQQQQQ", 1, 5, 0, vaddr, vaddr, size, size, 0x1000)
    out += struct.pack("<IIQQQQQQ", 2, 6, dyn_off, vaddr + dyn_off, 0, len(tags) * dyn, 0, 8)
    for tag, value in tags:
        out += struct.pack("<qQ", tag, value)
    return bytes(out + strings)


def test_reads_needed_and_runpath():
    info = elf.dynamic(make_elf(("libfoo.so.1", "libc.so.6"), "$ORIGIN/private:/opt/x"))
    assert info == elf.Dynamic(("libfoo.so.1", "libc.so.6"), ("$ORIGIN/private", "/opt/x"))


def test_real_host_binary():
    info = elf.dynamic(HOST_TRUE.read_bytes())
    assert info is not None and "libc.so.6" in info.needed


def test_static_and_non_elf_files_have_no_dependencies():
    assert elf.dynamic(b"#!/bin/sh\necho hi\n") is None
    assert elf.dynamic(b"\x7fELF\x01\x01" + bytes(100)) is None  # 32-bit: not a target here


def tree_of(make_deb, files) -> dict[str, Entry]:
    deb = make_deb("pkg", files)
    tree = Tree()
    tree.add_package("pkg", data_tar(deb.path))
    return tree.files()


def test_program_with_all_libraries(make_deb):
    files = tree_of(
        make_deb,
        {
            "usr/bin/player": make_elf(("libcodec.so.1", "libc.so.6")),
            # the soname link, as packages ship it, into the merged-/usr library folder
            "lib/aarch64-linux-gnu/libc.so.6": ("symlink", "libc-2.36.so"),
            "lib/aarch64-linux-gnu/libc-2.36.so": make_elf(),
            "usr/lib/aarch64-linux-gnu/libcodec.so.1": make_elf(("libprivate.so",), "$ORIGIN/c"),
            "usr/lib/aarch64-linux-gnu/c/libprivate.so": make_elf(("libc.so.6",)),
        },
    )
    assert loader.check_program(files, Arch.ARM64, "/usr/bin/player") == 4


def test_a_library_of_an_excluded_package_is_missing(make_deb):
    files = tree_of(
        make_deb,
        {
            "usr/bin/player": make_elf(("libcodec.so.1",)),
            "usr/lib/aarch64-linux-gnu/libcodec.so.1": make_elf(("libprivate.so",), "$ORIGIN/c"),
        },
    )
    message = r"libprivate.so \(needed by /usr/bin/player -> libcodec.so.1\) is in no unpacked"
    with pytest.raises(TreeError, match=message):
        loader.check_program(files, Arch.ARM64, "/usr/bin/player")


def test_libraries_of_the_other_architecture_do_not_count(make_deb):
    files = tree_of(
        make_deb,
        {
            "usr/bin/true": HOST_TRUE.read_bytes(),
            "usr/lib/x86_64-linux-gnu/libc.so.6": b"stand-in",
        },
    )
    assert loader.check_program(files, Arch.AMD64, "/usr/bin/true") == 2
    with pytest.raises(TreeError, match=r"libc.so.6 \(needed by /usr/bin/true\)"):
        loader.check_program(files, Arch.ARM64, "/usr/bin/true")


def test_the_program_itself_must_be_there(make_deb):
    files = tree_of(make_deb, {"usr/bin/other": b"x"})
    with pytest.raises(TreeError, match="runs /usr/bin/mpd, which no unpacked package"):
        loader.check_program(files, Arch.ARM64, "/usr/bin/mpd")
