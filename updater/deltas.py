"""The chunk deltas of a release from the one this device runs (``fleetcore.delta``).

A delta is used only when every one of its base chunks is in the seed (the active slot's
chunk index); the bases are read from the active slot and re-hashed like seeded chunks, and
the decoded chunk is checked against the new release's signed hash. A delta list needs no
trust beyond its TUF signature for its bounds: a wrong entry only costs a fallback to the
full chunk.
"""

from __future__ import annotations

from fleetcore.delta import Delta, DeltaList, delta_path, load_deltas
from updater.chunkindex import SeedMap


class DeltaPlan:
    """Deltas by the digest of the chunk they produce."""

    def __init__(self, deltas: DeltaList) -> None:
        self.from_version, self.to_version = deltas.from_version, deltas.to_version
        self._by_digest = {bytes.fromhex(d.target): d for d in deltas.deltas}

    @classmethod
    def load(cls, data: bytes) -> DeltaPlan:
        return cls(load_deltas(data))

    def __len__(self) -> int:
        return len(self._by_digest)

    def usable(self, digest: bytes, seed: SeedMap) -> Delta | None:
        """The delta that makes this chunk, if the seed holds all of its bases."""
        delta = self._by_digest.get(digest)
        if delta is None:
            return None
        if all(seed.find(bytes.fromhex(base.sha256)) is not None for base in delta.bases):
            return delta
        return None


def request(delta: Delta) -> tuple[str, int]:
    """What to fetch for ``delta``: its path in the store and its exact length."""
    return delta_path(delta.target, delta.bases), delta.delta_size
