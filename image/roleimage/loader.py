"""Library lookup without ``/etc/ld.so.cache``, and a check that the image's program finds all.

A cache would have to be made by the target's ``ldconfig`` (libc-bin, which mpd's closure does
not even pull in) under qemu-user; instead the image relies on what Debian's ``ld.so`` searches
without one: its built-in system path, the multiarch directories and ``/lib``, ``/usr/lib``
(``ld.so --help``: "system search path"). Libraries elsewhere are reached through their
users' RUNPATH (pulseaudio's and samba's private ones) or through an ``/etc/ld.so.conf.d``
entry, which only a cache honours. :func:`check` refuses a tree where such an entry names a
directory that holds shared objects, since the loader would not find them.

:func:`check_program` follows the ``DT_NEEDED`` entries of the image's program the way the
loader does (RUNPATH first, then the system path) and fails when one is missing, typically
because the recipe excluded the package providing it. Libraries opened with ``dlopen`` (plugins)
are outside what it can see.
"""

from __future__ import annotations

import posixpath

from image.roleimage import elf
from image.roleimage.errors import TreeError
from image.roleimage.recipe import Arch
from image.roleimage.tree import Entry, Kind, merged

CONF_DIR = "etc/ld.so.conf.d/"


def system_path(arch: Arch) -> tuple[str, ...]:
    """The directories Debian's dynamic loader searches without a cache, merged-/usr form."""
    return (f"usr/lib/{arch.triplet}", "usr/lib")


def configured_dirs(files: dict[str, Entry]) -> dict[str, str]:
    """Directories named in ``etc/ld.so.conf.d/*.conf``, mapped to the file naming them."""
    found: dict[str, str] = {}
    for path, entry in sorted(files.items()):
        if not (path.startswith(CONF_DIR) and path.endswith(".conf") and entry.kind is Kind.FILE):
            continue
        for line in entry.data.decode(errors="replace").splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("include "):
                directory = merged(line.strip("/"))
                if directory is not None:
                    found.setdefault(directory, path)
    return found


def check(files: dict[str, Entry], arch: Arch) -> None:
    searched = set(system_path(arch))
    for directory, conf in configured_dirs(files).items():
        if directory in searched:
            continue
        libraries = sorted(
            path
            for path, entry in files.items()
            if path.startswith(directory + "/")
            and "/" not in path[len(directory) + 1 :]
            and ".so" in path.rsplit("/", 1)[-1]
            and entry.kind is not Kind.DIR
        )
        if libraries:
            raise TreeError(
                f"{conf} adds /{directory} to the library path, which works only with an "
                f"ld.so.cache this builder does not make ({libraries[0]} would not be found)",
                hint="exclude the package, or prune the directory if nothing needs it",
            )


def resolve(files: dict[str, Entry], path: str) -> Entry | None:
    """The entry at absolute or relative ``path``, through merged /usr and symlinks."""
    for _ in range(40):
        location = merged(posixpath.normpath(path).strip("/"))
        entry = files.get(location) if location is not None else None
        if entry is None or entry.kind is not Kind.SYMLINK:
            return entry
        parent = posixpath.dirname(entry.path)
        path = entry.target if entry.target.startswith("/") else f"{parent}/{entry.target}"
    return None


def check_program(files: dict[str, Entry], arch: Arch, program: str) -> int:
    """Fail unless ``program`` and every library it needs, transitively, are in the image.

    Returns how many ELF objects were followed.
    """
    root = resolve(files, program)
    if root is None or root.kind is not Kind.FILE:
        raise TreeError(f"the image runs {program}, which no unpacked package provides")
    system = [f"/{d}" for d in system_path(arch)]
    todo, seen = [(root, f"/{root.path}")], set()
    while todo:
        entry, chain = todo.pop()
        if entry.path in seen:
            continue
        seen.add(entry.path)
        info = elf.dynamic(entry.data)
        if info is None:
            continue
        origin = "/" + posixpath.dirname(entry.path)
        dirs = [d.replace("$ORIGIN", origin) for d in info.runpath] + system
        for name in info.needed:
            found = next(
                (hit for d in dirs if (hit := resolve(files, f"{d}/{name}")) is not None), None
            )
            if found is None:
                raise TreeError(
                    f"{name} (needed by {chain}) is in no unpacked package",
                    hint="the recipe probably excludes the package that provides it",
                )
            todo.append((found, f"{chain} -> {name}"))
    return len(seen)
