"""Where chunks come from: the release repository's chunk store over HTTP, or a directory.

Every chunk is decompressed with a hard output cap and checked against the SHA-256 its
TUF-verified index lists, so the store itself needs no trust.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path

import httpx
import zstandard

from fleetcore.release import chunk_path, max_compressed_size
from updater.config import TransferConfig
from updater.errors import ChunkError, TransferError

log = logging.getLogger(__name__)


def decode_chunk(compressed: bytes, *, sha256: str, size: int) -> bytes:
    """Decompress one chunk and check it is exactly the signed bytes."""
    try:
        plain = zstandard.ZstdDecompressor().decompress(compressed, max_output_size=size)
    except zstandard.ZstdError as err:
        raise ChunkError(f"chunk {sha256} is not a valid zstd frame of {size} bytes") from err
    if len(plain) != size or hashlib.sha256(plain).hexdigest() != sha256:
        raise ChunkError(
            f"chunk {sha256} does not match its signed hash",
            hint="the chunk store serves wrong bytes; nothing was written from it",
        )
    return plain


class ChunkSource(ABC):
    """Fetch one compressed chunk; counts what it fetched so tests can prove no refetch."""

    def __init__(self) -> None:
        self.fetched_chunks = 0
        self.fetched_bytes = 0
        self._lock = threading.Lock()

    def get(self, sha256: str, size: int) -> bytes:
        compressed = self._fetch(sha256, max_compressed_size(size))
        with self._lock:
            self.fetched_chunks += 1
            self.fetched_bytes += len(compressed)
        return decode_chunk(compressed, sha256=sha256, size=size)

    @abstractmethod
    def _fetch(self, sha256: str, limit: int) -> bytes: ...

    @abstractmethod
    def close(self) -> None:
        """Release connections and files."""


class DirectoryChunkSource(ChunkSource):
    """A release repository copied to local storage (USB update)."""

    def __init__(self, base: Path) -> None:
        super().__init__()
        self.base = base

    def _fetch(self, sha256: str, limit: int) -> bytes:
        path = self.base / chunk_path(sha256)
        try:
            with path.open("rb") as handle:
                data = handle.read(limit + 1)
        except OSError as err:
            raise ChunkError(f"chunk {sha256} missing from {self.base}: {err.strerror}") from err
        if len(data) > limit:
            raise ChunkError(f"chunk {sha256} in {self.base} is larger than possible")
        return data

    def close(self) -> None:
        """Nothing stays open between chunks."""


class HttpChunkSource(ChunkSource):
    """The chunk store below ``base_url``, over one keep-alive connection pool.

    Transport errors and 5xx answers are retried with jittered exponential backoff; after the
    retries :class:`TransferError` says "try again later" and the install resumes then.
    A 404 or wrong bytes are not transient and fail the install.
    """

    def __init__(self, base_url: str, config: TransferConfig) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.config = config
        limits = httpx.Limits(
            max_connections=config.parallel_fetches,
            max_keepalive_connections=config.parallel_fetches,
        )
        self.client = httpx.Client(timeout=config.timeout_s, limits=limits)

    def _fetch(self, sha256: str, limit: int) -> bytes:
        url = f"{self.base_url}/{chunk_path(sha256)}"
        delay = self.config.backoff_initial_s
        for attempt in range(self.config.retries + 1):
            try:
                return self._get(url, limit)
            except (httpx.TransportError, _ServerError) as err:
                if attempt == self.config.retries:
                    raise TransferError(
                        f"chunk store unreachable after {attempt + 1} attempts: {err}"
                    ) from err
                log.info("chunk fetch failed (%s); retrying in %.1f s", err, delay)
                time.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter only
                delay = min(delay * 2, self.config.backoff_max_s)
        raise AssertionError("unreachable")

    def _get(self, url: str, limit: int) -> bytes:
        with self.client.stream("GET", url) as response:
            if response.status_code >= 500:
                raise _ServerError(f"{url}: HTTP {response.status_code}")
            if response.status_code != 200:
                raise ChunkError(f"{url}: HTTP {response.status_code}")
            data = bytearray()
            for block in response.iter_bytes():
                data += block
                if len(data) > limit:
                    raise ChunkError(f"{url} is longer than any chunk of its size can be")
            return bytes(data)

    def close(self) -> None:
        self.client.close()


class _ServerError(Exception):
    """A 5xx answer: the server is up but failing, worth a retry."""
