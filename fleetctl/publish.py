"""What ``releases publish`` uploads: a plan from the offline repository and the served one.

``fleet-sign`` (add, add-release, rotate) writes a complete repository on the signing
machine. The Overlord's publish API takes the new signed metadata plus only the files it does
not hold yet, so the plan compares the two: root versions past the served one (a rotation,
one publish each, the last together with the targets), the targets metadata if its version
is newer, target files whose name and hash the served targets do not list, the chunks of
new indexes and the diffs of new delta lists (the caller asks the server which it already
has). Planning reads files only;
the HTTP calls live in :mod:`fleetctl.commands.releases`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetcore import strictjson
from fleetcore.delta import delta_path, is_deltas_target, load_deltas
from fleetcore.errors import FormatError
from fleetcore.release import chunk_path, load_index
from fleetctl.errors import FleetctlError
from fleetctl.output import ByteProgress

MAX_METADATA_BYTES = 64 << 20
_NAME_PART = re.compile(r"^[A-Za-z0-9._+-]+$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MAX_ROOTS = 1000


class PublishError(FleetctlError):
    """The offline repository cannot be published as it is."""


@dataclass(frozen=True)
class Served:
    """What the Overlord serves now (from its public /tuf/metadata)."""

    root_version: int
    targets_version: int
    targets: dict[str, str]  # target name -> sha256


@dataclass
class Step:
    """One publish call: an optional root, optional targets, their new files."""

    root: Path | None = None
    targets: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)  # target name -> local file
    chunks: dict[str, Path] = field(default_factory=dict)  # sha256 -> local chunk
    diffs: dict[str, Path] = field(default_factory=dict)  # deltas/... -> local diff

    def size(self) -> int:
        paths = [p for p in (self.root, self.targets) if p is not None]
        paths += [*self.files.values(), *self.chunks.values(), *self.diffs.values()]
        return sum(p.stat().st_size for p in paths)


def _metadata(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise PublishError(f"cannot read {path}: {err.strerror}") from err
    try:
        doc = strictjson.loads(data, what=str(path), max_bytes=MAX_METADATA_BYTES)
    except (FormatError, UnicodeDecodeError) as err:
        raise PublishError(f"{path} is not valid TUF metadata: {err}") from err
    signed = doc.get("signed") if isinstance(doc, dict) else None
    if not isinstance(signed, dict) or not isinstance(signed.get("version"), int):
        raise PublishError(f"{path} is not signed TUF metadata (no signed.version)")
    return signed


def served_state(root: dict[str, Any], targets: dict[str, Any]) -> Served:
    """The served root and targets documents (as fetched) reduced to what planning needs."""
    try:
        return Served(
            root_version=int(root["signed"]["version"]),
            targets_version=int(targets["signed"]["version"]),
            targets={
                name: str(info["hashes"]["sha256"])
                for name, info in targets["signed"]["targets"].items()
            },
        )
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise PublishError(
            "the Overlord's served TUF metadata is not what fleet-sign writes",
            hint="check --url; on the server, 'fleet-sign init' creates the repository",
        ) from err


def _target_file(repo: Path, name: str, sha256: str) -> Path:
    parts = name.split("/")
    if any(p in {".", ".."} or not _NAME_PART.fullmatch(p) for p in parts) or not _SHA256.fullmatch(
        sha256
    ):
        raise PublishError(f"targets.json lists an invalid target {name[:200]!r}")
    folder, _, base = name.rpartition("/")
    path = repo / "targets" / folder / f"{sha256}.{base}"
    if not path.is_file():
        raise PublishError(
            f"target {name} is signed but its file {path} is missing",
            hint="publish from the repository fleet-sign wrote, on the signing machine",
        )
    return path


def plan(repo: Path, served: Served) -> list[Step]:
    """The publish calls that bring the Overlord up to ``repo``; empty if it is up to date."""
    metadata = repo / "metadata"
    if not (metadata / "targets.json").is_file():
        raise PublishError(
            f"{repo} has no metadata/targets.json",
            hint="give the repository directory that fleet-sign init/add wrote",
        )
    steps: list[Step] = []
    version = served.root_version + 1
    while (metadata / f"{version}.root.json").is_file() and len(steps) < _MAX_ROOTS:
        path = metadata / f"{version}.root.json"
        if _metadata(path)["version"] != version:
            raise PublishError(f"{path} does not hold root version {version}")
        steps.append(Step(root=path))
        version += 1
    targets = _metadata(metadata / "targets.json")
    if targets["version"] > served.targets_version:
        step = steps[-1] if steps else Step()
        if not steps:
            steps.append(step)
        step.targets = metadata / "targets.json"
        listed = targets.get("targets")
        if not isinstance(listed, dict):
            raise PublishError(f"{step.targets} has no targets map")
        for name, info in listed.items():
            sha256 = info.get("hashes", {}).get("sha256") if isinstance(info, dict) else None
            if not isinstance(sha256, str):
                raise PublishError(f"target {name[:200]!r} has no sha256 hash")
            if served.targets.get(name) != sha256:
                step.files[name] = _target_file(repo, name, sha256)
        for name, path in step.files.items():
            if name.endswith(".index.json"):
                step.chunks |= _chunks(repo, path)
            elif is_deltas_target(name):
                step.diffs |= _diffs(repo, path)
    return steps


def _chunks(repo: Path, index_file: Path) -> dict[str, Path]:
    try:
        index = load_index(index_file.read_bytes())
    except FormatError as err:
        raise PublishError(f"{index_file}: {err}") from err
    found = {}
    for chunk in index.chunks:
        path = repo / chunk_path(chunk.sha256)
        if not path.is_file():
            raise PublishError(
                f"chunk {chunk.sha256} of {index_file.name} is missing from {repo}/chunks",
                hint="fleet-sign add-release copies a release's chunks; run it again",
            )
        found[chunk.sha256] = path
    return found


def _diffs(repo: Path, list_file: Path) -> dict[str, Path]:
    try:
        deltas = load_deltas(list_file.read_bytes())
    except FormatError as err:
        raise PublishError(f"{list_file}: {err}") from err
    found = {}
    for delta in deltas.deltas:
        name = delta_path(delta.target, delta.bases)
        if not (repo / name).is_file():
            raise PublishError(
                f"diff {name} of {list_file.name} is missing from {repo}",
                hint="fleet-sign add-release copies a release's diffs; run it again",
            )
        found[name] = repo / name
    return found


class UploadFile:
    """A file httpx reads for a multipart part, opened only while it is read (a release has
    thousands of chunks: more than a process may hold open) and counted for progress."""

    def __init__(self, path: Path, progress: ByteProgress) -> None:
        self.path = path
        self.length = path.stat().st_size
        self.progress = progress
        self._handle: Any = None
        self._pos = 0

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._pos = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self.length}[
            whence
        ] + offset
        if self._handle is not None:
            self._handle.seek(self._pos)
        return self._pos

    def read(self, size: int = -1) -> bytes:
        if self._handle is None:
            self._handle = self.path.open("rb")
            self._handle.seek(self._pos)
        data: bytes = self._handle.read(size)
        self._pos += len(data)
        self.progress.add(len(data))
        if not data or self._pos >= self.length:
            self._handle.close()
            self._handle = None
        return data
