"""The publish path's chunk check: a zstd bomb upload is refused with bounded memory."""

from __future__ import annotations

import hashlib
import resource

import pytest
import zstandard

from signing.errors import RepositoryError
from signing.repository import store_chunk
from tests.updater.hostile import declared_bomb, undeclared_bomb


def test_a_good_chunk_is_stored_once(tmp_path):
    data = bytes(range(256)) * 100
    digest = hashlib.sha256(data).hexdigest()
    frame = zstandard.ZstdCompressor().compress(data)
    assert store_chunk(tmp_path, digest, frame) is True
    assert store_chunk(tmp_path, digest, frame) is False


@pytest.mark.parametrize(
    "bomb", [declared_bomb(1 << 40), undeclared_bomb()], ids=["declared", "streamed"]
)
def test_a_bomb_is_refused_without_decoding_it_whole(tmp_path, bomb):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(RepositoryError, match="more than"):
        store_chunk(tmp_path, "0" * 64, bomb)
    # The old check decoded a 32 KiB upload to 2 GiB; the cap is MAX_CHUNK_SIZE (16 MiB).
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024
    assert not list(tmp_path.rglob("*.zst"))
