"""Open a release source: the repository over HTTP, or a copy of it in a directory (USB).

Both go through the same TUF client and the same chunk verification; a directory is read
through a small ``FetcherInterface`` so no code path skips verification.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import FetcherInterface

from signing.client import ReleaseClient
from updater.chunks import ChunkSource, DirectoryChunkSource, HttpChunkSource
from updater.config import TransferConfig
from updater.errors import ConfigError
from updater.fetcher import ProxyAwareFetcher
from updater.paths import Roots
from updater.proxy import ProxyRules

DIRECTORY_SCHEME = "dir://"
_READ = 1 << 16


class DirectoryFetcher(FetcherInterface):
    """Serve ``dir://`` URLs from a local copy of the release repository."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def _fetch(self, url: str) -> Iterator[bytes]:
        relative = url.partition(":")[2].lstrip("/")
        path = (self.base / relative).resolve()
        if not path.is_relative_to(self.base.resolve()) or not path.is_file():
            raise DownloadHTTPError(f"{relative} not found in {self.base}", 404)
        return self._chunks(path)

    @staticmethod
    def _chunks(path: Path) -> Iterator[bytes]:
        with path.open("rb") as handle:
            while block := handle.read(_READ):
                yield block


@dataclass
class ReleaseSource:
    reader: ReleaseClient
    chunks: ChunkSource

    def close(self) -> None:
        self.chunks.close()


def directory_source(path: Path) -> str:
    return f"{DIRECTORY_SCHEME}{path.resolve()}"


def open_source(
    source: str,
    *,
    roots: Roots,
    trust_root: Path,
    transfer: TransferConfig,
    proxies: ProxyRules,
) -> ReleaseSource:
    """``source`` is an http(s) URL of the repository or ``dir://`` plus a directory.

    Metadata and chunks of an http(s) source take the proxy ``proxies`` gives for it.
    """
    bootstrap = None
    if not (roots.tuf_metadata / "root.json").exists():
        try:
            bootstrap = roots.under_root(trust_root).read_bytes()
        except OSError as err:
            raise ConfigError(
                f"no trusted TUF root: cannot read {roots.under_root(trust_root)}",
                hint="the image ships it; set trust_root in updater.yaml",
            ) from err
    if source.startswith(DIRECTORY_SCHEME):
        base = Path(source.removeprefix(DIRECTORY_SCHEME))
        client = ReleaseClient(
            metadata_dir=roots.tuf_metadata,
            base_url=DIRECTORY_SCHEME.rstrip("/"),
            bootstrap_root=bootstrap,
            fetcher=DirectoryFetcher(base),
        )
        return ReleaseSource(client, DirectoryChunkSource(base))
    if not source.startswith(("http://", "https://")):
        raise ConfigError(f"unsupported release source {source!r}")
    proxy = proxies.for_url(source)
    client = ReleaseClient(
        metadata_dir=roots.tuf_metadata,
        base_url=source,
        bootstrap_root=bootstrap,
        fetcher=ProxyAwareFetcher(proxy=proxy, timeout=transfer.timeout_s),
    )
    return ReleaseSource(client, HttpChunkSource(source, transfer, proxy=proxy))
