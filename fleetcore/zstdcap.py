"""zstd decoding that hostile input cannot turn into unbounded memory or output.

python-zstandard's one-shot ``decompress`` trusts a frame's declared content size: it ignores
``max_output_size`` when the frame carries one, so a 17-byte frame that declares 1 TiB asks
for 1 TiB at once. Everything here decodes in streaming mode instead, with the output capped
by the caller (a size from signed metadata or a fixed protocol limit), a frame that declares
another size refused before any output is made, and the decoder's window capped so a frame
header cannot make it allocate a large history buffer either.
"""

from __future__ import annotations

import io
import threading
from typing import IO

import zstandard

from fleetcore.errors import FormatError

# zstd's own default decoding limit (ZSTD_WINDOWLOG_LIMIT_DEFAULT = 27): what `zstd -d`
# accepts without --long. Streams (role bundles, uploads) are decoded with it.
STREAM_MAX_WINDOW = 1 << 27
# A frame for a known, small output needs no history larger than that output; the floor keeps
# frames from encoders that round the window up (a 1 KiB output in a 1 MiB window) decodable.
_MIN_WINDOW = 1 << 20
_READ = 1 << 16


class ZstdBombError(FormatError):
    """A zstd frame is invalid, declares another size, or decodes to more than allowed."""


_local = threading.local()


def _decompressor(max_window: int) -> zstandard.ZstdDecompressor:
    """One context per thread and window cap: making one costs twice a 64 KiB chunk's decode."""
    cache: dict[int, zstandard.ZstdDecompressor] = _local.__dict__.setdefault("by_window", {})
    if max_window not in cache:
        cache[max_window] = zstandard.ZstdDecompressor(max_window_size=max_window)
    return cache[max_window]


def _window_cap(size: int) -> int:
    return max(_MIN_WINDOW, 1 << max(size - 1, 1).bit_length())


def decompress_exact(data: bytes, size: int, *, what: str, base: bytes | None = None) -> bytes:
    """Decode one zstd frame that must hold exactly ``size`` bytes.

    Refuses a frame whose header declares another content size, output past ``size``,
    output short of it, and bytes after the frame. Memory is bounded by ``size`` plus a
    window of about the same, whatever the frame claims.

    With ``base``, the frame is a diff (``zstd --patch-from``) made with ``base`` as its
    raw-content dictionary; the window may then also span the base, and no more.
    """
    if size < 0:
        raise ZstdBombError(f"{what}: negative size {size}")
    if base is None:
        dctx = _decompressor(_window_cap(size))
    else:
        dictionary = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        dctx = zstandard.ZstdDecompressor(
            dict_data=dictionary, max_window_size=_window_cap(size + len(base))
        )
    try:
        declared = zstandard.get_frame_parameters(data).content_size
    except zstandard.ZstdError as err:
        raise ZstdBombError(f"{what} is not a zstd frame: {err}") from err
    if declared != zstandard.CONTENTSIZE_UNKNOWN and declared != size:
        raise ZstdBombError(f"{what} declares {declared} bytes, {size} expected")
    try:
        with dctx.stream_reader(io.BytesIO(data), read_size=_READ) as reader:
            plain = reader.read(size + 1)
            trailing = reader.read(1) if len(plain) == size else b""
    except zstandard.ZstdError as err:
        raise ZstdBombError(f"{what} is not a valid zstd frame of {size} bytes: {err}") from err
    if len(plain) != size:
        raise ZstdBombError(
            f"{what} decodes to {'more' if len(plain) > size else 'fewer'} "
            f"than the {size} bytes expected"
        )
    if trailing:
        raise ZstdBombError(f"{what} has data after its zstd frame")
    return plain


class CappedZstdReader(io.RawIOBase):
    """A readable stream of the zstd stream ``raw`` decoded; fails past ``limit`` bytes.

    Reading past the limit raises :class:`ZstdBombError` rather than returning EOF, so a
    caller cannot mistake a truncated bomb for a complete stream. Frames are read across
    (a multi-threaded encoder may write several).
    """

    def __init__(
        self, raw: IO[bytes], *, limit: int, what: str, max_window: int = STREAM_MAX_WINDOW
    ) -> None:
        super().__init__()
        if limit < 0:
            raise ZstdBombError(f"{what}: negative size limit {limit}")
        self.what = what
        self.limit = limit
        self.produced = 0
        dctx = zstandard.ZstdDecompressor(max_window_size=max_window)
        self._reader = dctx.stream_reader(raw, read_size=_READ, read_across_frames=True)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), self.limit - self.produced + 1)
        try:
            data = self._reader.read(want)
        except zstandard.ZstdError as err:
            raise ZstdBombError(f"{self.what} is not valid zstd: {err}") from err
        self.produced += len(data)
        if self.produced > self.limit:
            raise ZstdBombError(f"{self.what} decodes to more than {self.limit} bytes")
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._reader.close()  # type: ignore[no-untyped-call]
        super().close()


def decompress_capped(data: bytes, *, limit: int, what: str) -> bytes:
    """Decode a whole zstd stream held in memory, refusing more than ``limit`` bytes."""
    try:
        declared = zstandard.get_frame_parameters(data).content_size
    except zstandard.ZstdError as err:
        raise ZstdBombError(f"{what} is not a zstd frame: {err}") from err
    if declared != zstandard.CONTENTSIZE_UNKNOWN and declared > limit:
        raise ZstdBombError(f"{what} declares {declared} bytes, more than the {limit} allowed")
    with CappedZstdReader(io.BytesIO(data), limit=limit, what=what) as reader:
        out = io.BytesIO()
        while chunk := reader.read(_READ):
            out.write(chunk)
        return out.getvalue()
