"""Stand-in images for running the compose stack's PostgreSQL and Overlord containers in tests.

CI reaches no container registry, so the official ``postgres`` and the Overlord images cannot
be pulled or built there. This builds one small image from what the host already has: Debian's
PostgreSQL binaries with their shared libraries, and busybox-static for a shell, tar and find.
Its entry point behaves like the official postgres image for what the ops scripts use
(``POSTGRES_USER``/``POSTGRES_DB``, trust on the local socket, data in
``/var/lib/postgresql/data``); as the Overlord it only needs a shell, tar and find on
``/var/lib/overlord``.
"""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
from pathlib import Path

from tests.ops.tools import find_tool, run_tool

PG_BIN_NAMES = ("postgres", "initdb", "pg_ctl", "psql", "pg_dump", "pg_restore", "pg_isready")
BUSYBOX_APPLETS = ("sh", "tar", "gzip", "find", "mkdir", "sleep", "true", "cat", "rm", "ls")
POSTGRES_UID = 999
OVERLORD_UID = 10001
ENTRYPOINT = """#!/bin/sh
set -eu
data=/var/lib/postgresql/data
if [ ! -s "$data/PG_VERSION" ]; then
    initdb -D "$data" -U "$POSTGRES_USER" --auth=trust --locale=C --encoding=UTF8 >/dev/null
    pg_ctl -D "$data" -o "-c listen_addresses=''" -w start >/dev/null
    psql -q -U "$POSTGRES_USER" -d postgres -c "CREATE DATABASE \\"$POSTGRES_DB\\""
    pg_ctl -D "$data" -m fast -w stop >/dev/null
fi
exec postgres -D "$data" -c listen_addresses='*' -c jit=off
"""


def _postgres_root() -> Path:
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if not bins:
        raise AssertionError("PostgreSQL server binaries not found under /usr/lib/postgresql")
    return bins[-1].parents[1]


def _shared_libraries(binaries: list[Path]) -> set[Path]:
    libs: set[Path] = set()
    ldd = find_tool("ldd")
    for binary in binaries:
        output = run_tool([ldd, binary]).stdout
        libs.update(Path(p) for p in re.findall(r"(?:=> )?(/\S+) \(0x", output))
    return libs


def _add_file(tar: tarfile.TarFile, source: Path, target: str, mode: int | None = None) -> None:
    info = tar.gettarinfo(str(source.resolve()), arcname=target)
    if mode is not None:
        info.mode = mode
    with source.open("rb") as handle:
        tar.addfile(info, handle)


def _add_dir(tar: tarfile.TarFile, target: str, uid: int = 0, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(target)
    info.type = tarfile.DIRTYPE
    info.uid = info.gid = uid
    info.mode = mode
    tar.addfile(info)


def _add_text(tar: tarfile.TarFile, target: str, text: str, mode: int = 0o644) -> None:
    data = text.encode()
    info = tarfile.TarInfo(target)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def _root_tree() -> bytes:
    pg = _postgres_root()
    version = pg.name
    modules = [p for p in (pg / "lib").glob("*.so") if not p.name.startswith("llvmjit")]
    binaries = [pg / "bin" / name for name in PG_BIN_NAMES]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("bin", "etc", "tmp", "usr", "var", "var/lib", "var/run"):
            _add_dir(tar, directory, mode=0o1777 if directory == "tmp" else 0o755)
        _add_file(tar, Path(find_tool("busybox")), "bin/busybox")
        for applet in BUSYBOX_APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
        for binary in binaries:
            _add_file(tar, binary, str(binary).lstrip("/"))
        for module in modules:
            _add_file(tar, module, str(module).lstrip("/"))
        for lib in sorted(_shared_libraries(binaries + modules)):
            _add_file(tar, lib, str(lib).lstrip("/"))
        share = Path("/usr/share/postgresql") / version
        for tree in (share, Path("/usr/share/zoneinfo")):
            for path in sorted(tree.rglob("*")):
                if path.is_file():
                    _add_file(tar, path, str(path).lstrip("/"))
        _add_text(
            tar,
            "etc/passwd",
            f"root:x:0:0:root:/root:/bin/sh\npostgres:x:{POSTGRES_UID}:{POSTGRES_UID}::/tmp:/bin/sh\n"
            f"overlord:x:{OVERLORD_UID}:{OVERLORD_UID}::/var/lib/overlord:/bin/sh\n",
        )
        _add_text(tar, "etc/group", f"root:x:0:\npostgres:x:{POSTGRES_UID}:\n")
        _add_text(tar, "usr/local/bin/standin-postgres", ENTRYPOINT, mode=0o755)
        _add_dir(tar, "var/lib/postgresql", uid=POSTGRES_UID)
        _add_dir(tar, "var/lib/postgresql/data", uid=POSTGRES_UID, mode=0o700)
        _add_dir(tar, "var/run/postgresql", uid=POSTGRES_UID, mode=0o2775)
        _add_dir(tar, "var/lib/overlord", uid=OVERLORD_UID, mode=0o750)
    return buffer.getvalue()


def build_standin_image(docker: str, tag: str) -> str:
    """Import the stand-in image as ``tag`` and return the tag."""
    pg_bin = _postgres_root() / "bin"
    changes = [
        f"ENV PATH={pg_bin}:/bin:/usr/local/bin",
        "ENV TZ=UTC",
        'CMD ["/usr/local/bin/standin-postgres"]',
    ]
    argv = [docker, "import"]
    for change in changes:
        argv += ["--change", change]
    proc = subprocess.run(
        [*argv, "-", tag], input=_root_tree(), capture_output=True, check=False, timeout=120
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return tag
