"""``fleet-image inspect``: what a disk image or a release folder holds."""

from __future__ import annotations

from pathlib import Path

from fleetcore.errors import CommandError, FormatError
from fleetcore.release import chunk_path
from fleetcore.run import run, run_text
from image import chunkstore, disk, release
from image.errors import InputError
from image.layout import MIB, SECTOR


def describe(path: Path) -> str:
    if path.is_dir():
        return describe_release(path)
    if path.is_file():
        return describe_disk(path)
    raise InputError(f"{path} is neither a disk image nor a release folder")


def describe_release(path: Path) -> str:
    try:
        manifest = release.read_manifest(path)
    except OSError as err:
        raise InputError(f"{path} has no readable {release.MANIFEST}") from err
    except FormatError as err:
        raise InputError(str(err)) from err
    lines = [
        f"release {manifest.version}",
        f"  hardware: {', '.join(h.value for h in manifest.hardware)}",
        f"  system format: {manifest.system_format.value}",
        f"  created: {manifest.created}",
    ]
    for name, entry in sorted(manifest.images.items()):
        index = chunkstore.load_index_file(path / release.index_file(name))
        stored = sum(
            (path / chunk_path(c.sha256)).stat().st_size
            for c in {c.sha256: c for c in index.chunks}.values()
        )
        lines.append(
            f"  {name.value}: {entry.size} bytes sha256 {entry.sha256}\n"
            f"    {len(index.chunks)} chunks, {stored} bytes compressed, index {entry.index}"
        )
        sha, patches = manifest.written(name, "b")
        if patches:
            size = sum(len(p.data) // 2 for p in patches)
            lines.append(f"    slot b: {len(patches)} patches ({size} bytes) -> sha256 {sha}")
    return "\n".join(lines) + "\n"


def describe_disk(path: Path) -> str:
    try:
        table = disk.read_table(path)
    except CommandError as err:
        raise InputError(f"{path} has no readable partition table") from err
    lines = [f"disk {path}: {path.stat().st_size} bytes, {table['label']} {table.get('id', '')}"]
    lines.append(f"  sha256 {chunkstore.sha256_file(path)}")
    for part in table.get("partitions", []):
        start, size = part["start"] * SECTOR, part["size"] * SECTOR
        fstype = _fstype(path, start)
        lines.append(
            f"  {part['node'][len(str(path)) :]:>3} {part.get('name', ''):<9} "
            f"{size // MIB:>6} MiB at {start // MIB:>6} MiB  {fstype}"
        )
        for name in ("autoboot.txt", "cmdline.txt"):
            text = _fat_file(path, start, name) if fstype == "vfat" else None
            if text is not None:
                body = text.strip().replace("\n", "\n      ")
                lines.append(f"    {name}:\n      {body}")
    return "\n".join(lines) + "\n"


def _fstype(path: Path, offset: int) -> str:
    proc = run(["blkid", "-p", "-O", str(offset), "-s", "TYPE", "-o", "value", path], check=False)
    return proc.stdout.decode().strip() or "empty"


def _fat_file(path: Path, offset: int, name: str) -> str | None:
    try:
        return run_text(
            ["mtype", "-i", f"{path}@@{offset}", f"::/{name}"], env={"MTOOLS_SKIP_CHECK": "1"}
        )
    except CommandError:
        return None
