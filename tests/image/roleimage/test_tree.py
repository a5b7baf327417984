"""Unpacking package data into one merged-/usr tree."""

from __future__ import annotations

import pytest

from image.roleimage.apt import data_tar
from image.roleimage.errors import TreeError
from image.roleimage.tree import Kind, Tree, merged


def test_merged_paths():
    assert merged("lib/aarch64-linux-gnu/libc.so.6") == "usr/lib/aarch64-linux-gnu/libc.so.6"
    assert merged("bin/sh") == "usr/bin/sh"
    assert merged("sbin/ldconfig") == "usr/sbin/ldconfig"
    assert merged("lib64/ld-linux-x86-64.so.2") == "usr/lib64/ld-linux-x86-64.so.2"
    assert merged("lib") is None
    assert merged("library/x") == "library/x"
    assert merged("usr/lib/x") == "usr/lib/x"


def test_merged_usr_moves_files_and_adds_the_alias_links(make_deb):
    libc = make_deb(
        "libc-test",
        {
            "lib/aarch64-linux-gnu/libc.so.6": b"\x7fELF libc",
            "lib/ld-linux-aarch64.so.1": ("symlink", "aarch64-linux-gnu/ld.so"),
            "lib/aarch64-linux-gnu/ld.so": b"\x7fELF ld",
            "usr/lib/aarch64-linux-gnu/libz.so.1": b"\x7fELF zlib",
        },
    )
    tool = make_deb("tool", {"bin/tool": b"#!/bin/sh\n", "usr/bin/other": b"other"})
    tree = Tree()
    for deb in (libc, tool):
        tree.add_package(deb.ref.name, data_tar(deb.path))
    entries = {e.path: e for e in tree.entries()}

    assert entries["usr/lib/aarch64-linux-gnu/libc.so.6"].data == b"\x7fELF libc"
    assert entries["usr/lib/aarch64-linux-gnu/libz.so.1"].package == "libc-test"
    assert entries["usr/bin/tool"].data == b"#!/bin/sh\n"
    # the loader's path /lib/ld-linux-aarch64.so.1 resolves through the alias link
    assert entries["usr/lib/ld-linux-aarch64.so.1"].target == "aarch64-linux-gnu/ld.so"
    for alias in ("bin", "sbin", "lib"):
        assert entries[alias].kind is Kind.SYMLINK and entries[alias].target == f"usr/{alias}"
        assert entries[f"usr/{alias}"].kind is Kind.DIR
    assert not any(p.startswith(("lib/", "bin/")) for p in entries)
    assert entries["tmp"].kind is Kind.DIR and entries["tmp"].mode == 0o1777
    assert list(entries) == sorted(entries)


def test_other_alias_dirs_appear_only_when_shipped(make_deb):
    deb = make_deb("loader64", {"lib64/ld-linux-x86-64.so.2": ("symlink", "/lib/x/ld.so")})
    tree = Tree()
    tree.add_package("loader64", data_tar(deb.path))
    entries = {e.path: e for e in tree.entries()}
    assert entries["lib64"].target == "usr/lib64"
    assert entries["usr/lib64/ld-linux-x86-64.so.2"].target == "/lib/x/ld.so"
    assert "lib32" not in entries


def test_hard_links_become_copies(make_deb):
    deb = make_deb("perlish", {"usr/bin/a": b"same", "bin/b": ("hardlink", "usr/bin/a")})
    tree = Tree()
    tree.add_package("perlish", data_tar(deb.path))
    entries = {e.path: e for e in tree.entries()}
    assert entries["usr/bin/a"].kind is entries["usr/bin/b"].kind is Kind.FILE
    assert entries["usr/bin/a"].data == entries["usr/bin/b"].data == b"same"


def test_identical_files_from_two_packages_are_fine(make_deb):
    a = make_deb("a", {"usr/share/x/conf": b"same", "bin/tool": b"t"})
    b = make_deb("b", {"usr/share/x/conf": b"same", "usr/bin/tool": b"t"})
    tree = Tree()
    tree.add_package("a", data_tar(a.path))
    tree.add_package("b", data_tar(b.path))
    assert {e.path for e in tree.entries()} >= {"usr/share/x/conf", "usr/bin/tool"}


def test_conflicting_files_are_refused(make_deb):
    # /bin/tool and /usr/bin/tool are the same file on merged /usr
    a = make_deb("a", {"bin/tool": b"one"})
    b = make_deb("b", {"usr/bin/tool": b"two"})
    tree = Tree()
    tree.add_package("a", data_tar(a.path))
    with pytest.raises(TreeError, match="usr/bin/tool is shipped differently by a and b"):
        tree.add_package("b", data_tar(b.path))


def test_prune_keeps_matches_and_their_parents(make_deb):
    deb = make_deb(
        "docs",
        {
            "usr/share/doc/docs/copyright": b"GPL",
            "usr/share/doc/docs/changelog.gz": b"log",
            "usr/share/man/man1/x.1.gz": b"man",
            "usr/share/docs-not-pruned/x": b"x",
            "usr/bin/x": b"x",
        },
    )
    tree = Tree()
    tree.add_package("docs", data_tar(deb.path))
    tree.prune(("usr/share/doc", "usr/share/man"), ("usr/share/doc/*/copyright",))
    paths = {e.path for e in tree.entries()}
    assert {"usr/share/doc/docs/copyright", "usr/share/doc/docs", "usr/share/doc"} <= paths
    assert "usr/share/doc/docs/changelog.gz" not in paths
    assert not any(p.startswith("usr/share/man") for p in paths)
    assert {"usr/share/docs-not-pruned/x", "usr/bin/x"} <= paths
