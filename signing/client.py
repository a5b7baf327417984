"""Device-side verification: refresh TUF metadata, look up targets, download them verified.

Built on ``tuf.ngclient``: the protocol (root chain, thresholds, expiry, rollback and
mix-and-match checks) is python-tuf's, not ours. This module adds strict parsing of every
metadata file before python-tuf reads it, the Metrica custom metadata, streaming downloads with
a hard length cap, and one error tree for the updater.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, TargetFile
from tuf.api.serialization import DeserializationError
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig
from tuf.ngclient.urllib3_fetcher import Urllib3Fetcher

from fleetcore import strictjson
from fleetcore.atomic import atomic_open
from fleetcore.errors import FormatError
from signing.errors import (
    DownloadError,
    MetadataError,
    TargetMismatch,
    TargetNotFound,
)
from signing.targets import TargetCustom

USER_AGENT = "metrica-fleet"
_T = TypeVar("_T")


@dataclass(frozen=True)
class TrustedTarget:
    """A target as the verified targets metadata describes it."""

    name: str
    length: int
    sha256: str
    custom: TargetCustom | None
    info: TargetFile


def _describe(err: tuf_errors.RepositoryError) -> str:
    if isinstance(err, tuf_errors.ExpiredMetadataError):
        return f"metadata has expired (freeze attack or wrong clock): {err}"
    if isinstance(err, tuf_errors.BadVersionNumberError):
        return f"metadata version went backwards (rollback attack): {err}"
    if isinstance(err, tuf_errors.UnsignedMetadataError):
        return f"metadata signatures do not meet the threshold: {err}"
    if isinstance(err, tuf_errors.LengthOrHashMismatchError):
        return f"metadata does not match what snapshot or timestamp signed: {err}"
    return f"metadata rejected: {err}"


def check_metadata(data: bytes, *, name: str, max_bytes: int | None = None) -> None:
    """Refuse metadata that is not strict JSON, before python-tuf parses it.

    python-tuf reads metadata with the standard ``json.loads``: of a key named twice it keeps
    the last, and the signature covers that reading, so a reader keeping the first would see
    other metadata; it also takes NaN, lone surrogates and any nesting. The publisher and the
    Overlord parse with :mod:`fleetcore.strictjson`; so does the device, here.

    It also refuses fields of ``signed`` that python-tuf's object model drops: the signature
    is checked over that model's own serialisation, so such a field is covered by no
    signature, and the device would keep unsigned bytes as trusted metadata.
    """
    try:
        document = strictjson.loads(data, what=name, max_bytes=max_bytes)
    except FormatError as err:
        raise MetadataError(f"metadata refused, not strict JSON: {err}") from err
    try:
        model = Metadata.from_bytes(data)
    except (tuf_errors.RepositoryError, DeserializationError, ValueError, TypeError, KeyError):
        return  # python-tuf refuses it itself, with its own reason
    if not isinstance(document, dict) or document.get("signed") != model.signed.to_dict():
        raise MetadataError(f"metadata refused: {name} carries fields no signature covers")


class StrictMetadataFetcher(FetcherInterface):
    """``inner``, with every metadata file it downloads checked by :func:`check_metadata`.

    python-tuf downloads metadata through ``download_bytes`` (root, timestamp, snapshot,
    targets and delegated targets) and nothing else through it; target files go through
    ``fetch`` (:meth:`ReleaseClient._stream`) and are checked against their signed hashes.
    """

    def __init__(self, inner: FetcherInterface) -> None:
        self.inner = inner

    def _fetch(self, url: str) -> Iterator[bytes]:
        return self.inner.fetch(url)

    def download_bytes(self, url: str, max_length: int) -> bytes:
        data = self.inner.download_bytes(url, max_length)  # capped at max_length
        check_metadata(data, name=url.rpartition("/")[2][:80], max_bytes=max_length)
        return data


class ReleaseClient:
    """One device's view of the release repository at ``base_url``.

    ``metadata_dir`` keeps the trusted metadata between runs (on /data). ``bootstrap_root`` is
    the root.json shipped in the image; it is used only until a newer root has been trusted.
    """

    def __init__(
        self,
        *,
        metadata_dir: Path,
        base_url: str,
        bootstrap_root: bytes | None = None,
        fetcher: FetcherInterface | None = None,
        socket_timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        metadata_dir.mkdir(parents=True, exist_ok=True)
        if (metadata_dir / "root.json").exists():
            bootstrap_root = None
        elif bootstrap_root is None:
            raise MetadataError(
                f"no trusted root in {metadata_dir} and no bootstrap root given",
                hint="the image ships /etc/metrica-fleet/root.json",
            )
        self._fetcher = fetcher or Urllib3Fetcher(
            socket_timeout=int(socket_timeout), app_user_agent=USER_AGENT
        )
        try:
            if bootstrap_root is not None:
                check_metadata(bootstrap_root, name="root.json")
            self._updater = Updater(
                metadata_dir=str(metadata_dir),
                metadata_base_url=f"{self.base_url}/metadata/",
                target_base_url=f"{self.base_url}/targets/",
                fetcher=StrictMetadataFetcher(self._fetcher),
                config=UpdaterConfig(app_user_agent=USER_AGENT),
                bootstrap=bootstrap_root,
            )
        except (tuf_errors.RepositoryError, MetadataError) as err:
            raise MetadataError(f"trusted root is invalid: {err}") from err
        except OSError as err:
            raise MetadataError(f"cannot read trusted metadata in {metadata_dir}: {err}") from err

    def refresh(self) -> None:
        """Update root, timestamp, snapshot and targets; keeps the old trusted set on failure."""
        self._guard(self._updater.refresh)

    def get_target(self, name: str) -> TrustedTarget:
        info = self._guard(lambda: self._updater.get_targetinfo(name))
        if info is None:
            raise TargetNotFound(f"no signed target named {name!r} in the release repository")
        sha256 = info.hashes.get("sha256")
        if sha256 is None:
            raise MetadataError(f"target {name!r} has no sha256 hash")
        return TrustedTarget(
            name=name,
            length=info.length,
            sha256=sha256,
            custom=TargetCustom.from_custom(info.custom, target=name),
            info=info,
        )

    def url_of(self, target: TrustedTarget) -> str:
        """Consistent-snapshot URL: ``targets/<dir>/<sha256>.<basename>``."""
        folder, _, base = target.name.rpartition("/")
        prefix = f"{folder}/" if folder else ""
        return f"{self.base_url}/targets/{prefix}{target.sha256}.{base}"

    def read(self, target: TrustedTarget) -> bytes:
        """Download a small target (manifest, index) into memory, verified."""
        buffer = io.BytesIO()
        self._stream(target, buffer)
        return buffer.getvalue()

    def download(self, target: TrustedTarget, dest: Path) -> Path:
        """Stream a target to ``dest``; only a fully verified file ever appears there."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(dest) as out:
            self._stream(target, out)
        return dest

    def _stream(self, target: TrustedTarget, out: IO[bytes]) -> None:
        hashers = {alg: hashlib.new(alg) for alg in target.info.hashes}
        received = 0
        url = self.url_of(target)
        try:
            for block in self._fetcher.fetch(url):
                received += len(block)
                if received > target.length:
                    raise TargetMismatch(
                        f"target {target.name} is longer than its signed {target.length} bytes"
                        " (endless data attack); download stopped"
                    )
                for hasher in hashers.values():
                    hasher.update(block)
                out.write(block)
        except tuf_errors.DownloadError as err:
            raise DownloadError(f"cannot download {target.name}: {err}") from err
        if received != target.length:
            raise TargetMismatch(
                f"target {target.name} is {received} bytes, signed length is {target.length}"
            )
        for alg, hasher in hashers.items():
            if hasher.hexdigest() != target.info.hashes[alg]:
                raise TargetMismatch(f"target {target.name} does not match its signed {alg}")

    @staticmethod
    def _guard(call: Callable[[], _T]) -> _T:
        try:
            return call()
        except tuf_errors.RepositoryError as err:
            raise MetadataError(_describe(err)) from err
        except tuf_errors.DownloadError as err:
            raise DownloadError(f"release repository unreachable or too slow: {err}") from err
