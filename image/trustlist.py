"""The boot keys a built image's updater trusts, read from its system partition for
``fleet-image inspect``: the names in :data:`fleetcore.bootsig.TRUST_DIR` (each the key's
SHA-256 fingerprint, ``<fingerprint>.pem``), listed with the filesystem's own tools.

squashfs is listed in place (``unsquashfs -o OFFSET -lc``); ``dump.erofs`` takes no offset, so
an EROFS partition is copied out (sparse) first.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from fleetcore import bootsig
from fleetcore.run import run

_LS_HEADER = ["NID", "TYPE", "FILENAME"]


def listed(path: Path, offset: int, size: int, fstype: str) -> list[str] | None:
    """The fingerprints the filesystem of type ``fstype`` at ``offset`` of ``path`` lists, in
    order; None when it has no trust list (an unsigned image) or is not a system filesystem."""
    if fstype == "squashfs":
        names = _squashfs(path, offset)
    elif fstype == "erofs":
        names = _erofs(path, offset, size)
    else:
        return None
    return None if names is None else sorted(n.removesuffix(".pem") for n in names)


def _squashfs(path: Path, offset: int) -> list[str] | None:
    folder = f"/{bootsig.TRUST_DIR}/"
    argv: list[str | Path] = [
        "unsquashfs",
        "-o",
        str(offset),
        "-lc",
        "-d",
        "",
        path,
        bootsig.TRUST_DIR,
    ]
    lines = run(argv).stdout.decode(errors="replace").splitlines()
    names = [line.removeprefix(folder) for line in lines if line.startswith(folder)]
    return names or None


def _erofs(path: Path, offset: int, size: int) -> list[str] | None:
    with tempfile.TemporaryDirectory(prefix="fleet-inspect-") as scratch:
        copy = Path(scratch) / "system.erofs"
        run(
            [
                "dd", f"if={path}", f"of={copy}", f"skip={offset}", f"count={size}",
                "iflag=skip_bytes,count_bytes", "conv=sparse", "bs=1M", "status=none",
            ]
        )  # fmt: skip
        argv: list[str | Path] = ["dump.erofs", f"--path=/{bootsig.TRUST_DIR}", "--ls", copy]
        lines = run(argv, check=False).stdout.decode(errors="replace").splitlines()
    header = next((i for i, line in enumerate(lines) if line.split() == _LS_HEADER), None)
    if header is None:
        return None
    names = [line.split(maxsplit=2)[2] for line in lines[header + 1 :] if len(line.split()) == 3]
    return [name for name in names if name not in (".", "..")] or None
