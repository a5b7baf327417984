"""The build: resolve, download, unpack, prune, check, write the archive."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from image.roleimage import loader
from image.roleimage.apt import DEFAULT_CACHE, AptRoot, Deb, PackageRef, data_tar, shared_cache
from image.roleimage.archive import image_config, write_archive, write_layer
from image.roleimage.errors import PackageError
from image.roleimage.recipe import Arch, Recipe
from image.roleimage.tree import Tree

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    image_id: str
    archive: Path
    packages: tuple[PackageRef, ...]
    excluded: tuple[str, ...]


def select(recipe: Recipe, closure: list[PackageRef]) -> list[PackageRef]:
    """The closure minus the recipe's exclusions; an exclusion outside it is an error."""
    names = {ref.name for ref in closure}
    stale = sorted(set(recipe.exclude) - names)
    if stale:
        raise PackageError(
            f"exclude names {', '.join(stale)}, which the closure of "
            f"{' '.join(recipe.packages)} does not contain",
            hint="the dependencies changed: drop the name from the recipe's exclude list",
        )
    return [ref for ref in closure if ref.name not in recipe.exclude]


def _program(recipe: Recipe) -> str | None:
    """The executable the image runs, when the recipe names it by absolute path."""
    command = recipe.entrypoint or recipe.cmd or ()
    return command[0] if command and command[0].startswith("/") else None


def assemble(recipe: Recipe, arch: Arch, debs: Iterable[Deb], out: Path) -> Result:
    """Make the image archive in ``out`` from already downloaded packages."""
    ordered = sorted(debs, key=lambda deb: deb.ref)
    tree = Tree()
    for deb in ordered:
        tree.add_package(deb.ref.name, data_tar(deb.path))
    tree.prune(recipe.prune, recipe.keep)
    files = tree.files()
    loader.check(files, arch)
    program = _program(recipe)
    if program is not None:
        followed = loader.check_program(files, arch, program)
        log.info("%s and its libraries resolve (%d ELF objects)", program, followed)
    out.mkdir(parents=True, exist_ok=True)
    layer = write_layer(tree.entries(), out)
    try:
        config = image_config(
            recipe,
            arch,
            layer,
            packages=[(deb.ref.name, deb.ref.version) for deb in ordered],
            excluded=recipe.exclude,
        )
        image_id, archive = write_archive(out, recipe.name, config, layer)
        log.info("%s: %d packages, layer of %d bytes", archive, len(ordered), layer.size)
    finally:
        layer.path.unlink(missing_ok=True)
    return Result(
        image_id=image_id,
        archive=archive,
        packages=tuple(deb.ref for deb in ordered),
        excluded=tuple(sorted(recipe.exclude)),
    )


def build(recipe: Recipe, arch: Arch, out: Path, *, cache: Path = DEFAULT_CACHE) -> Result:
    """Resolve and download the recipe's packages for ``arch`` and make its image in ``out``."""
    root = cache / f"{recipe.suite}-{arch.value}"
    # One build at a time per apt folder: apt refuses a second process outright (its archives
    # lock does not wait), and another build's autoclean could drop a .deb this one reads.
    with shared_cache(root):
        apt = AptRoot(root, recipe, arch)
        apt.update()
        closure = apt.resolve(recipe.packages)
        chosen = select(recipe, closure)
        log.info("%d packages in the closure, %d unpacked", len(closure), len(chosen))
        return assemble(recipe, arch, apt.download(chosen), out)
