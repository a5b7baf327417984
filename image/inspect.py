"""``fleet-image inspect``: what a disk image or a release folder holds."""

from __future__ import annotations

import tempfile
from pathlib import Path

from fleetcore.errors import CommandError, FormatError
from fleetcore.release import ImageName, chunk_path
from fleetcore.run import run, run_text
from image import bootfiles, chunkstore, disk, release, verity
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
    lines.append(f"  boards: {_release_boards(path)}")
    return "\n".join(lines) + "\n"


def _release_boards(path: Path) -> str:
    """The boards the release's boot image serves (rebuilt from its chunks, then listed)."""
    index = chunkstore.load_index_file(path / release.index_file(ImageName.BOOT))
    with tempfile.TemporaryDirectory(prefix="fleet-inspect-") as scratch:
        image = Path(scratch) / "boot.vfat"
        chunkstore.reassemble(index, path, image)
        return bootfiles.describe_boards(_fat_boot_files(image, 0))


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
                if name == "cmdline.txt":
                    lines.append(f"    root: {verity.describe(text)}")
        if fstype == "vfat" and part.get("name", "").startswith("boot_"):
            lines.append(f"    boards: {bootfiles.describe_boards(_fat_boot_files(path, start))}")
    return "\n".join(lines) + "\n"


def _fat_boot_files(path: Path, offset: int) -> bootfiles.BootFiles:
    """The files of the FAT filesystem at ``offset`` and its config.txt."""
    try:
        listing = run_text(
            ["mdir", "-/", "-b", "-i", f"{path}@@{offset}", "::/"],
            env={"MTOOLS_SKIP_CHECK": "1"},
        )
    except CommandError:
        listing = ""
    names = [
        line[3:] for line in listing.splitlines() if line.startswith("::/") and line[-1] != "/"
    ]
    return bootfiles.BootFiles.of(names, _fat_file(path, offset, bootfiles.CONFIG_TXT))


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
