"""Real TUF repositories for the Overlord's tests, built with the signing library."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import zstandard
from tuf.api.metadata import Metadata, TargetFile, Targets
from tuf.api.serialization.json import JSONSerializer

from fleetcore.release import (
    Chunk,
    Chunker,
    ChunkIndex,
    ImageName,
    chunk_path,
    dump_index,
    index_target,
    manifest_target,
    role_target,
)
from fleetcore.version import Version
from signing.keys import KeyStore
from signing.repository import add_targets, init_repository
from signing.targets import TargetCustom, TargetKind, TargetSpec

SHA0 = "0" * 64


@dataclass
class Repo:
    path: Path
    keydir: Path
    keys: KeyStore

    def add_os(self, version: str, *, hardware: tuple[str, ...] = ("pi4", "pi5")) -> None:
        src = self.path.parent / f"manifest-{version}.json"
        src.write_text(json.dumps({"version": version}))
        add_targets(
            self.path,
            self.keys,
            [TargetSpec(src, manifest_target(version), _custom(TargetKind.OS, version, hardware))],
        )

    def add_role(self, name: str, version: str) -> None:
        src = self.path.parent / f"{name}-{version}.tar.zst"
        src.write_bytes(zstandard.ZstdCompressor().compress(b"role bundle " + version.encode()))
        add_targets(
            self.path,
            self.keys,
            [
                TargetSpec(
                    src, role_target(name, version), _custom(TargetKind.ROLE, version, ("pi4",))
                )
            ],
        )


def _custom(kind: TargetKind, version: str, hardware: tuple[str, ...]) -> TargetCustom:
    return TargetCustom.model_validate(
        {
            "kind": kind,
            "version": version,
            "hardware": hardware,
            "uncompressed_size": 1,
            "uncompressed_sha256": SHA0,
        }
    )


def make_repo(root: Path) -> Repo:
    keydir = root / "keys"
    keys = KeyStore.generate(keydir)
    repo = root / "repo"
    init_repository(repo, keys)
    return Repo(repo, keydir, keys)


@dataclass
class Upload:
    """What CI sends to the publish API for one OS release."""

    signed_targets: bytes
    files: dict[str, bytes]
    chunks: dict[str, bytes]


def offline_release(
    repo: Repo,
    version: str,
    *,
    signer_keys: KeyStore | None = None,
    shared: tuple[bytes, ...] = (),
) -> Upload:
    """Sign a new targets version offline (as CI would) adding an OS release with chunks.

    ``shared`` chunk payloads are added after the release's own three, so two releases can
    share chunks as consecutive images do."""
    payload = [f"chunk {i} of {version}".encode() * 50 for i in range(3)] + list(shared)
    chunks = {
        hashlib.sha256(p).hexdigest(): zstandard.ZstdCompressor().compress(p) for p in payload
    }
    index = ChunkIndex(
        image=ImageName.SYSTEM,
        image_size=sum(len(p) for p in payload),
        image_sha256=hashlib.sha256(b"".join(payload)).hexdigest(),
        chunker=Chunker(min_size=16, avg_size=64, max_size=4096),
        chunks=tuple(Chunk(sha256=hashlib.sha256(p).hexdigest(), size=len(p)) for p in payload),
    )
    files = {
        index_target(version, ImageName.SYSTEM): dump_index(index),
        manifest_target(version): json.dumps({"version": version}).encode(),
    }
    md = Metadata[Targets].from_file(str(repo.path / "metadata" / "targets.json"))
    for name, data in files.items():
        custom = (
            _custom(TargetKind.OS, version, ("pi4",)) if name.endswith("manifest.json") else None
        )
        info = TargetFile.from_data(name, data, ["sha256"])
        if custom is not None:
            info.unrecognized_fields["custom"] = custom.to_custom()
        md.signed.targets[name] = info
    md.signed.version += 1
    md.signed.expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    md.signatures.clear()
    for signer in (signer_keys or repo.keys).get("targets"):
        md.sign(signer, append=True)
    return Upload(md.to_bytes(JSONSerializer()), files, chunks)


def multipart(upload: Upload) -> list[tuple[str, tuple[str, bytes, str]]]:
    parts = [("targets", ("targets.json", upload.signed_targets, "application/json"))]
    parts += [
        (f"target:{n}", ("f", d, "application/octet-stream")) for n, d in upload.files.items()
    ]
    parts += [(f"chunk:{h}", ("c", d, "application/zstd")) for h, d in upload.chunks.items()]
    return parts


def chunk_file(repo: Repo, digest: str) -> Path:
    return repo.path / chunk_path(digest)


def version(text: str) -> Version:
    return Version(text)
