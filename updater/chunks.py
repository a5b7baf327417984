"""Where chunks come from: the release repository's chunk store over HTTP, or a directory.

Every chunk is decompressed with a hard output cap and checked against the SHA-256 its
TUF-verified index lists, so the store itself needs no trust.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import random
import stat
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

from fleetcore.release import chunk_path, max_compressed_size
from fleetcore.zstdcap import ZstdBombError, decompress_exact
from updater.config import TransferConfig
from updater.errors import ChunkError, TransferError
from updater.pipeline import BodyTooLong, PipelinedConnection, ProtocolError
from updater.proxy import Proxy

log = logging.getLogger(__name__)


def decode_chunk(compressed: bytes, *, sha256: str, size: int) -> bytes:
    """Decompress one chunk and check it is exactly the signed bytes.

    The frame is decoded with an output cap of the chunk's signed size and a frame that
    declares another size is refused before anything is allocated
    (:func:`fleetcore.zstdcap.decompress_exact`), so a hostile store cannot make a small
    chunk cost more memory than the chunk itself.
    """
    return _decoded(compressed, sha256=sha256, size=size, what=f"chunk {sha256}", base=None)


def decode_delta(diff: bytes, base: bytes, *, sha256: str, size: int) -> bytes:
    """Decode a chunk delta (``fleetcore.delta``) against its base bytes, with the same cap
    and the same check against the chunk's signed hash as a full chunk."""
    return _decoded(diff, sha256=sha256, size=size, what=f"delta of chunk {sha256}", base=base)


def _decoded(data: bytes, *, sha256: str, size: int, what: str, base: bytes | None) -> bytes:
    hint = "the chunk store serves wrong bytes; nothing was written from it"
    try:
        plain = decompress_exact(data, size, what=what, base=base)
    except ZstdBombError as err:
        raise ChunkError(str(err), hint=hint) from err
    if hashlib.sha256(plain).hexdigest() != sha256:
        raise ChunkError(f"{what} does not match its signed hash", hint=hint)
    return plain


Request = tuple[str, int]  # (sha256, size of the uncompressed chunk)


class ChunkSource(ABC):
    """Fetch compressed chunks and hand out verified bytes; counts what it fetched."""

    def __init__(self) -> None:
        self.fetched_chunks = 0
        self.fetched_bytes = 0
        self._lock = threading.Lock()

    def get_many(self, requests: list[Request]) -> Iterator[bytes]:
        """The verified bytes of each requested chunk, in order."""
        wanted = [(chunk_path(sha256), max_compressed_size(size)) for sha256, size in requests]
        for (sha256, size), compressed in zip(requests, self._counted(wanted), strict=True):
            yield decode_chunk(compressed, sha256=sha256, size=size)

    def get_raw(self, wanted: list[tuple[str, int]]) -> Iterator[bytes]:
        """The bytes of each (path, exact length) as stored, in order: chunk deltas, which
        the caller decodes against their bases. A file of another length is refused."""
        for (path, length), data in zip(wanted, self._counted(wanted), strict=True):
            if len(data) != length:
                raise ChunkError(f"{path} is {len(data)} bytes, {length} listed")
            yield data

    def _counted(self, wanted: list[tuple[str, int]]) -> Iterator[bytes]:
        # strict: run the fetch generator to its end, so it returns its connection to the pool
        for _, compressed in zip(wanted, self._fetch_many(wanted), strict=True):
            with self._lock:
                self.fetched_chunks += 1
                self.fetched_bytes += len(compressed)
            yield compressed

    def get(self, sha256: str, size: int) -> bytes:
        (data,) = self.get_many([(sha256, size)])
        return data

    @abstractmethod
    def _fetch_many(self, wanted: list[tuple[str, int]]) -> Iterator[bytes]:
        """Stored bytes of each (path below the base, length cap), in order."""

    @abstractmethod
    def close(self) -> None:
        """Release connections and files."""


class DirectoryChunkSource(ChunkSource):
    """A release repository copied to local storage (USB update)."""

    def __init__(self, base: Path) -> None:
        super().__init__()
        self.base = base

    def _fetch_many(self, wanted: list[tuple[str, int]]) -> Iterator[bytes]:
        for name, limit in wanted:
            path = self.base / name
            try:
                # Non-blocking: opening a FIFO (a stick is any filesystem) would otherwise
                # wait for a writer forever; no effect on a regular file.
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                with os.fdopen(fd, "rb") as handle:
                    if not stat.S_ISREG(os.fstat(fd).st_mode):
                        raise ChunkError(f"{name} in {self.base} is not a regular file")
                    data = handle.read(limit + 1)
            except OSError as err:
                raise ChunkError(f"{name} missing from {self.base}: {err.strerror}") from err
            if len(data) > limit:
                raise ChunkError(f"{name} in {self.base} is larger than possible")
            yield data

    def close(self) -> None:
        """Nothing stays open between chunks."""


class HttpChunkSource(ChunkSource):
    """The chunk store below ``base_url``: pipelined GETs on a few keep-alive connections.

    A broken connection, a timeout or a 5xx answer is retried (the unanswered requests are
    resent on a new connection) with jittered exponential backoff; after ``retries`` failures
    in a row :class:`TransferError` says "try again later" and the install resumes then. A
    404 or wrong bytes are not transient and fail the install. ``proxy`` is the one
    :meth:`updater.proxy.ProxyRules.for_url` chose for ``base_url``, or none.
    """

    def __init__(
        self, base_url: str, config: TransferConfig, *, proxy: Proxy | None = None
    ) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.config = config
        self.proxy = proxy
        self._idle: queue.SimpleQueue[PipelinedConnection] = queue.SimpleQueue()
        self._all: list[PipelinedConnection] = []

    def _connection(self) -> PipelinedConnection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            conn = PipelinedConnection(
                self.base_url, timeout=self.config.timeout_s, proxy=self.proxy
            )
            with self._lock:
                self._all.append(conn)
            return conn

    def _fetch_many(self, wanted: list[tuple[str, int]]) -> Iterator[bytes]:
        remaining = list(wanted)
        failures = 0
        delay = self.config.backoff_initial_s
        while remaining:
            conn = self._connection()
            batch = list(remaining)
            try:
                answers = conn.get_many([path for path, _ in batch], [limit for _, limit in batch])
                for (path, _), (status, body) in zip(batch, answers, strict=False):
                    if status >= 500:
                        raise ProtocolError(f"chunk store answered HTTP {status}")
                    if status != 200:
                        conn.close()
                        raise ChunkError(f"{path}: chunk store answered HTTP {status}")
                    remaining.pop(0)
                    failures, delay = 0, self.config.backoff_initial_s
                    yield body
            except BodyTooLong as err:
                conn.close()
                raise ChunkError(f"{remaining[0][0]} is longer than possible: {err}") from err
            except OSError as err:  # includes ProtocolError, timeouts, refused connections
                conn.close()
                failures += 1
                if failures > self.config.retries:
                    raise TransferError(
                        f"chunk store unreachable after {failures} attempts: {err}"
                    ) from err
                log.info("chunk fetch failed (%s); retrying in %.2f s", err, delay)
                time.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self.config.backoff_max_s)
                continue
            except BaseException:
                conn.close()
                raise
            self._idle.put(conn)

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
