"""Library lookup without ``/etc/ld.so.cache``.

A cache would have to be made by the target's ``ldconfig`` (libc-bin, which mpd's closure does
not even pull in) under qemu-user; instead the image relies on what Debian's ``ld.so`` searches
without one: its built-in system path, the multiarch directories and ``/lib``, ``/usr/lib``
(``ld.so --help``: "system search path"). Libraries elsewhere are reached through their
users' RUNPATH (pulseaudio's and samba's private ones) or through an ``/etc/ld.so.conf.d``
entry, which only a cache honours. :func:`check` refuses a tree where such an entry names a
directory that holds shared objects, since the loader would not find them.
"""

from __future__ import annotations

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
