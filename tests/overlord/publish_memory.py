"""Run in a fresh interpreter: upload zstd bombs to the publish API and report peak memory.

A subprocess so the peak (VmHWM) belongs to this upload alone, not to whatever the test
process did before. Prints one JSON line: each answer's status and detail, and the peak
resident memory before and after, in KiB.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import zstandard

from fleetcore.release import Chunk, Chunker, ChunkIndex, ImageName, dump_index, index_target
from overlord import migrate
from overlord.auth.models import KeyRole
from overlord.db import make_engine
from tests.overlord.conftest import make_overlord
from tests.overlord.tufrepo import make_repo, multipart, offline_release

BOMB_SIZE = 1 << 30


def bomb() -> bytes:
    """About 32 KiB of zstd that declares and expands to 1 GiB of zeros, made in 1 MiB steps."""
    compressor = zstandard.ZstdCompressor(level=1).compressobj(size=BOMB_SIZE)
    block = bytes(1 << 20)
    parts = [compressor.compress(block) for _ in range(BOMB_SIZE // len(block))]
    return b"".join(parts) + compressor.flush()


def peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def main(workdir: Path) -> None:
    repo = make_repo(workdir / "tuf")
    url = f"sqlite:///{workdir / 'overlord.db'}"
    migrate.upgrade(make_engine(url))
    overlord = make_overlord(url, repo)
    data = bomb()
    digest = hashlib.sha256(b"not the bomb").hexdigest()
    # The bomb as a chunk no uploaded index names (capped decoding), then as one an index
    # names with a 256 KiB size (exact decoding).
    unnamed = offline_release(repo, "1.1.0")
    unnamed.chunks[digest] = data
    named = offline_release(repo, "1.1.0")
    index = ChunkIndex(
        image=ImageName.SYSTEM,
        image_size=256 * 1024,
        image_sha256=digest,
        chunker=Chunker(min_size=16, avg_size=64, max_size=256 * 1024),
        chunks=(Chunk(sha256=digest, size=256 * 1024),),
    )
    named.files[index_target("1.1.0", ImageName.SYSTEM)] = dump_index(index)
    named.chunks = {digest: data}
    headers = {"Authorization": f"Bearer {overlord.token(KeyRole.OPERATOR)}"}
    answers = []
    with overlord.client:
        before = peak_kib()
        for upload in (unnamed, named):
            resp = overlord.client.post(
                "/api/v1/tuf/publish", files=multipart(upload), headers=headers
            )
            answers.append({"status": resp.status_code, "detail": resp.json().get("detail")})
        after = peak_kib()
    print(
        json.dumps({"bomb_bytes": len(data), "answers": answers, "before": before, "after": after})
    )


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tmp))
