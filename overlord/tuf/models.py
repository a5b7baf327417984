"""Names of the repository's parts; the repository itself is files, not tables."""

from __future__ import annotations

from pathlib import Path

METADATA_DIR = "metadata"
TARGETS_DIR = "targets"
CHUNKS_DIR = "chunks"
WRITE_LEASE = "tuf-write"
TARGET_FIELD = "target:"
CHUNK_FIELD = "chunk:"
DELTA_FIELD = "delta:"
SIGNED_TARGETS_FIELD = "targets"
SIGNED_ROOT_FIELD = "root"


def timestamp_path(repo_dir: Path) -> Path:
    return repo_dir / METADATA_DIR / "timestamp.json"
