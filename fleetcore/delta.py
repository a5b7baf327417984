"""Chunk deltas: a changed chunk sent as a zstd diff against chunks a device already has.

A release built with ``fleet-image assemble --delta-from PREVIOUS`` carries, beside its
chunks, one delta list per previous release it was diffed from:

- the TUF target ``os/<to>/deltas/<from>.json`` (:class:`DeltaList`), listing for each chunk
  of the new release that ``<from>`` lacks and that a diff makes smaller: the chunk's SHA-256,
  the base chunks of ``<from>`` (in order; their bytes concatenated are the diff's raw-content
  dictionary, as ``zstd --patch-from`` uses the old file) and the diff's compressed size;
- the diffs, outside TUF like chunks: ``deltas/<first 4 hex>/<target>-<base key>.zst``.

A diff needs no trust of its own: its output is capped at the chunk's signed size and checked
against the chunk's signed hash before it is written, and any failure falls back to the full
chunk. A release without a delta list is exactly a release of before deltas, and a device that
knows nothing of them never asks for one.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal

from pydantic import Field, StrictInt, model_validator

from fleetcore.errors import FormatError
from fleetcore.release import (
    _SHA256,
    MAX_CHUNK_SIZE,
    Chunk,
    Sha256,
    _dump,
    _load,
    _Strict,
    max_compressed_size,
)
from fleetcore.version import Version

FORMAT: Literal[1] = 1
DELTAS_DIR = "deltas"
_DELTA_PATH = re.compile(rf"{DELTAS_DIR}/[0-9a-f]{{4}}/[0-9a-f]{{64}}-[0-9a-f]{{64}}\.zst")
# A diff's dictionary is at most this many chunks and bytes: the device holds it in memory
# beside the chunk while it decodes, once per fetch thread.
MAX_BASES = 8
MAX_BASE_BYTES = 2 * 1024 * 1024
DELTA_LISTS = "delta-lists"


class Delta(_Strict):
    target: Sha256
    bases: tuple[Chunk, ...] = Field(min_length=1, max_length=MAX_BASES)
    delta_size: StrictInt = Field(gt=0, le=max_compressed_size(MAX_CHUNK_SIZE))

    @model_validator(mode="after")
    def _bases_bounded(self) -> Delta:
        total = sum(base.size for base in self.bases)
        if total > MAX_BASE_BYTES:
            raise ValueError(f"bases add up to {total} bytes, above {MAX_BASE_BYTES}")
        return self


class DeltaList(_Strict):
    """The diffs from release ``from_version`` to ``to_version``."""

    format: Literal[1] = FORMAT
    from_version: Version
    to_version: Version
    deltas: tuple[Delta, ...]

    @model_validator(mode="after")
    def _one_per_target(self) -> DeltaList:
        seen: set[str] = set()
        for delta in self.deltas:
            if delta.target in seen:
                raise ValueError(f"chunk {delta.target} has two deltas")
            seen.add(delta.target)
        return self

    def by_target(self) -> dict[str, Delta]:
        return {delta.target: delta for delta in self.deltas}


def delta_list_file(from_version: Version | str) -> str:
    """Where a release folder (``fleet-image assemble``'s OUT/release) keeps its delta list
    from ``from_version``, for ``fleet-sign add-release`` to publish."""
    return f"{DELTA_LISTS}/{from_version}.json"


def deltas_target(to_version: Version | str, from_version: Version | str) -> str:
    return f"os/{to_version}/deltas/{from_version}.json"


def is_deltas_target(name: str) -> bool:
    """Whether a TUF target name is a delta list's (:func:`deltas_target`)."""
    parts = name.split("/")
    return len(parts) == 4 and parts[0] == "os" and parts[2] == "deltas" and name.endswith(".json")


def is_delta_path(path: str) -> bool:
    """Whether ``path`` has the shape of :func:`delta_path`'s answer (a diff's place)."""
    return _DELTA_PATH.fullmatch(path) is not None


def delta_path(target: str, bases: tuple[Chunk, ...] | list[Chunk]) -> str:
    """Path of a diff below the release repository's base URL or directory."""
    if not _SHA256.fullmatch(target) or not bases:
        raise FormatError(f"not a delta of a SHA-256 hex digest: {target!r}")
    key = hashlib.sha256(",".join(base.sha256 for base in bases).encode()).hexdigest()
    return f"{DELTAS_DIR}/{target[:4]}/{target}-{key}.zst"


def load_deltas(data: bytes) -> DeltaList:
    return _load(DeltaList, data, "delta list")


def dump_deltas(deltas: DeltaList) -> bytes:
    return _dump(deltas)
