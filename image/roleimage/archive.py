"""The ``docker save`` archive: one layer tar, the image config and ``manifest.json``.

Everything is written deterministically: members sorted by path, every mtime the fixed
:data:`EPOCH`, numeric owners without names, the config JSON with sorted keys and a fixed
``created``. The image ID is the SHA-256 of the config bytes, and the config holds the layer's
SHA-256 (``rootfs.diff_ids``), so the same packages give the same ID and the same archive.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from fleetcore.atomic import atomic_open
from image.roleimage.recipe import Arch, Recipe
from image.roleimage.tree import Entry, Kind

EPOCH = 0
CREATED = "1970-01-01T00:00:00Z"
LABEL_PREFIX = "org.metrica-fleet.role-image"


@dataclass(frozen=True)
class Layer:
    path: Path
    diff_id: str
    size: int


class _Hashing(io.RawIOBase):
    """A write-only file that hashes and counts what passes through to ``target``."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.size

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.sha256.update(view)
        self.target.write(view)
        self.size += len(view)
        return len(view)


def _info(entry: Entry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path)
    info.mode, info.uid, info.gid = entry.mode, entry.uid, entry.gid
    info.uname = info.gname = ""
    info.mtime = EPOCH
    if entry.kind is Kind.DIR:
        info.type = tarfile.DIRTYPE
    elif entry.kind is Kind.SYMLINK:
        info.type, info.linkname = tarfile.SYMTYPE, entry.target
    else:
        info.size = len(entry.data)
    return info


def write_layer(entries: Iterable[Entry], folder: Path) -> Layer:
    """Write the layer tar into ``folder`` and return its diff ID (``sha256:<hex>``)."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=".layer-")
    try:
        with os.fdopen(fd, "wb") as handle, _Hashing(handle) as sink:
            with tarfile.open(fileobj=sink, mode="w:", format=tarfile.PAX_FORMAT) as tar:
                for entry in entries:
                    data = io.BytesIO(entry.data) if entry.kind is Kind.FILE else None
                    tar.addfile(_info(entry), data)
            digest, size = sink.sha256.hexdigest(), sink.size
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Layer(Path(name), f"sha256:{digest}", size)


def packages_label(packages: Iterable[tuple[str, str]]) -> str:
    return " ".join(f"{name}={version}" for name, version in sorted(packages))


def image_config(
    recipe: Recipe,
    arch: Arch,
    layer: Layer,
    *,
    packages: Iterable[tuple[str, str]],
    excluded: Iterable[str],
) -> bytes:
    """The image config JSON; its SHA-256 is the image ID."""
    labels = {
        **recipe.labels,
        f"{LABEL_PREFIX}.recipe": recipe.name,
        f"{LABEL_PREFIX}.suite": recipe.suite,
        f"{LABEL_PREFIX}.packages": packages_label(packages),
        f"{LABEL_PREFIX}.excluded": " ".join(sorted(excluded)),
    }
    config: dict[str, Any] = {
        "Env": [f"{k}={v}" for k, v in sorted(recipe.env.items())],
        "WorkingDir": recipe.workdir,
        "Labels": labels,
    }
    if recipe.entrypoint is not None:
        config["Entrypoint"] = list(recipe.entrypoint)
    if recipe.cmd is not None:
        config["Cmd"] = list(recipe.cmd)
    if recipe.user is not None:
        config["User"] = recipe.user
    document: dict[str, Any] = {
        "architecture": arch.value,
        "os": "linux",
        "created": CREATED,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [{"created": CREATED, "created_by": f"fleet-image role-image {recipe.name}"}],
    }
    if arch.variant is not None:
        document["variant"] = arch.variant
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, EPOCH
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def write_archive(out: Path, recipe_name: str, config: bytes, layer: Layer) -> tuple[str, Path]:
    """Write ``out/<hex>.tar`` (what ``docker load -i`` reads); return the image ID and path."""
    hexid = hashlib.sha256(config).hexdigest()
    layer_name = f"{layer.diff_id.removeprefix('sha256:')}/layer.tar"
    manifest = [
        {
            "Config": f"{hexid}.json",
            "RepoTags": [f"metrica-fleet/{recipe_name}:{hexid[:12]}"],
            "Layers": [layer_name],
        }
    ]
    target = out / f"{hexid}.tar"
    with (
        atomic_open(target) as handle,
        tarfile.open(fileobj=handle, mode="w:", format=tarfile.PAX_FORMAT) as tar,
    ):
        _add_bytes(tar, f"{hexid}.json", config)
        folder = tarfile.TarInfo(layer_name.split("/")[0])
        folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o755, EPOCH
        tar.addfile(folder)
        info = tarfile.TarInfo(layer_name)
        info.size, info.mode, info.mtime = layer.size, 0o644, EPOCH
        with layer.path.open("rb") as source:
            tar.addfile(info, source)
        _add_bytes(tar, "manifest.json", json.dumps(manifest, sort_keys=True).encode())
    return f"sha256:{hexid}", target
