"""``fleet-image inspect``: what a disk image or a release folder holds."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from fleetcore import bootsig
from fleetcore.errors import CommandError, FormatError
from fleetcore.release import ImageName, chunk_path
from fleetcore.run import run
from image import bootslot, chunkstore, disk, release, trustlist
from image.errors import InputError
from image.layout import MIB, SECTOR


@dataclass(frozen=True)
class Report:
    text: str
    unverified: list[str] = field(default_factory=list)
    """Boot partitions whose boot.sig does not verify against the key given (or has none)."""


def describe(path: Path, boot_pubkey: Path | None = None) -> Report:
    """What a disk image or release holds; ``boot_pubkey`` checks each boot.sig against it."""
    key = _public_key(boot_pubkey) if boot_pubkey is not None else None
    if path.is_dir():
        return describe_release(path, key)
    if path.is_file():
        return describe_disk(path, key)
    raise InputError(f"{path} is neither a disk image nor a release folder")


def _public_key(path: Path) -> rsa.RSAPublicKey:
    try:
        return bootsig.load_public_key(path.read_bytes())
    except OSError as err:
        raise InputError(f"cannot read boot public key {path}: {err.strerror}") from err
    except bootsig.BootSigError as err:
        raise InputError(f"boot public key {path}: {err}") from err


def describe_release(path: Path, key: rsa.RSAPublicKey | None = None) -> Report:
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
    boot = _release_boot(path, key)
    lines += [f"  {line}" for line in boot.lines]
    return Report("\n".join(lines) + "\n", ["boot (slot a)"] if boot.verified is False else [])


def _release_boot(path: Path, key: rsa.RSAPublicKey | None) -> bootslot.SlotView:
    """Slot A's boot partition of the release (rebuilt from its chunks): mode, boot.sig,
    cmdline.txt and the boards it serves."""
    index = chunkstore.load_index_file(path / release.index_file(ImageName.BOOT))
    with tempfile.TemporaryDirectory(prefix="fleet-inspect-") as scratch:
        image = Path(scratch) / "boot.vfat"
        chunkstore.reassemble(index, path, image)
        return bootslot.describe(image, 0, key)


def describe_disk(path: Path, key: rsa.RSAPublicKey | None = None) -> Report:
    try:
        table = disk.read_table(path)
    except CommandError as err:
        raise InputError(f"{path} has no readable partition table") from err
    lines = [f"disk {path}: {path.stat().st_size} bytes, {table['label']} {table.get('id', '')}"]
    lines.append(f"  sha256 {chunkstore.sha256_file(path)}")
    modes: set[bootslot.Mode] = set()
    unverified: list[str] = []
    for part in table.get("partitions", []):
        start, size = part["start"] * SECTOR, part["size"] * SECTOR
        fstype = _fstype(path, start)
        lines.append(
            f"  {part['node'][len(str(path)) :]:>3} {part.get('name', ''):<9} "
            f"{size // MIB:>6} MiB at {start // MIB:>6} MiB  {fstype}"
        )
        autoboot = bootslot.fat_file(path, start, "autoboot.txt") if fstype == "vfat" else None
        if autoboot is not None:
            body = autoboot.strip().replace("\n", "\n      ")
            lines.append(f"    autoboot.txt:\n      {body}")
        if part.get("name") == "system_a":
            lines.append(f"    {_trust_line(trustlist.listed(path, start, size, fstype))}")
        if fstype == "vfat" and part.get("name", "").startswith("boot_"):
            view = bootslot.describe(path, start, key)
            modes.add(view.mode)
            lines += [f"    {line}" for line in view.lines]
            if view.verified is False:
                unverified.append(part.get("name", ""))
    if len(modes) == 1:
        (mode,) = modes
        lines.insert(2, f"  boot mode: {mode} ({bootslot.NOTES[mode]})")
    elif modes:
        lines.insert(2, f"  boot mode: mixed ({', '.join(sorted(modes))})")
    return Report("\n".join(lines) + "\n", unverified)


def _trust_line(fingerprints: list[str] | None) -> str:
    if fingerprints is None:
        return "trusted boot keys: none (its updater leaves boot signatures to the bootloader)"
    return f"trusted boot keys: {', '.join(fingerprints)}"


def _fstype(path: Path, offset: int) -> str:
    proc = run(["blkid", "-p", "-O", str(offset), "-s", "TYPE", "-o", "value", path], check=False)
    return proc.stdout.decode().strip() or "empty"
