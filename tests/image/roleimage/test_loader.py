"""Library lookup without an ld.so.cache: only the loader's built-in path may hold libraries."""

from __future__ import annotations

import pytest

from image.roleimage import loader
from image.roleimage.apt import data_tar
from image.roleimage.errors import TreeError
from image.roleimage.recipe import Arch
from image.roleimage.tree import Tree


def tree_of(make_deb, files) -> Tree:
    deb = make_deb("pkg", files)
    tree = Tree()
    tree.add_package("pkg", data_tar(deb.path))
    return tree


def test_multiarch_conf_is_what_the_loader_searches_anyway(make_deb):
    tree = tree_of(
        make_deb,
        {
            "etc/ld.so.conf.d/aarch64-linux-gnu.conf": (
                b"# Multiarch support\n/usr/local/lib/aarch64-linux-gnu\n"
                b"/lib/aarch64-linux-gnu\n/usr/lib/aarch64-linux-gnu\n"
            ),
            "lib/aarch64-linux-gnu/libc.so.6": b"\x7fELF",
        },
    )
    assert loader.configured_dirs(tree.files()) == {
        "usr/local/lib/aarch64-linux-gnu": "etc/ld.so.conf.d/aarch64-linux-gnu.conf",
        "usr/lib/aarch64-linux-gnu": "etc/ld.so.conf.d/aarch64-linux-gnu.conf",
    }
    loader.check(tree.files(), Arch.ARM64)


def test_a_conf_dir_holding_libraries_is_refused(make_deb):
    tree = tree_of(
        make_deb,
        {
            "etc/ld.so.conf.d/blas.conf": b"/usr/lib/aarch64-linux-gnu/blas\n",
            "usr/lib/aarch64-linux-gnu/blas/libblas.so.3": b"\x7fELF",
        },
    )
    with pytest.raises(TreeError, match="blas.conf adds /usr/lib/aarch64-linux-gnu/blas"):
        loader.check(tree.files(), Arch.ARM64)


def test_the_other_architecture_path_is_not_searched(make_deb):
    tree = tree_of(
        make_deb,
        {
            "etc/ld.so.conf.d/x86_64-linux-gnu.conf": b"/usr/lib/x86_64-linux-gnu\n",
            "usr/lib/x86_64-linux-gnu/libc.so.6": b"\x7fELF",
        },
    )
    loader.check(tree.files(), Arch.AMD64)
    with pytest.raises(TreeError, match="libc.so.6 would not be found"):
        loader.check(tree.files(), Arch.ARM64)
