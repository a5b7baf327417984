"""Debian arm64 packages for the test guest, fetched with apt and cached by content.

apt runs with a private configuration (its own sources, lists and cache under the cache
directory, architecture arm64), so the host's dpkg architectures and sources stay untouched.
An unpacked package lives under ``<cache>/unpacked/<sha256 of the .deb>/``: the key is the hash
apt verified against the signed archive index, so a new kernel upload is a new entry and a
cached one is never stale.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fleetcore.errors import CommandError
from fleetcore.run import run
from harness.errors import GuestAssetError

DEFAULT_CACHE = Path(os.environ.get("FLEET_QEMU_CACHE", "/var/cache/metrica-fleet/qemu-tests"))
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
SUITE = "bookworm"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
KERNEL_METAPACKAGE = "linux-image-arm64"
LISTS_MAX_AGE = 24 * 3600.0
"""Refresh the package lists once a day; with no network, older lists still serve."""


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    sha256: str


def parse_control(text: str) -> dict[str, str]:
    """The fields of the first paragraph of a Debian control text (continuations dropped)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break
        key, sep, value = line.partition(":")
        if sep and not line[0].isspace():
            fields[key] = value.strip()
    return fields


def package_of(fields: dict[str, str]) -> Package:
    try:
        return Package(fields["Package"], fields["Version"], fields["SHA256"])
    except KeyError as err:
        raise GuestAssetError(f"package index entry without a {err} field") from err


def kernel_image_of(fields: dict[str, str]) -> str:
    """The one ``linux-image-*`` package a kernel metapackage depends on."""
    names = [d.split()[0] for d in fields.get("Depends", "").split(",") if d.strip()]
    images = [n for n in names if n.startswith("linux-image-")]
    if len(images) != 1:
        raise GuestAssetError(f"{fields.get('Package')} depends on {len(images)} kernel images")
    return images[0]


class Apt:
    """apt-get and apt-cache for arm64, confined to ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sources = root / "sources.list"
        self.lists = root / "lists"
        self.status = root / "status"

    def _options(self) -> list[str]:
        options = {
            "Dir::Etc::SourceList": self.sources,
            "Dir::Etc::SourceParts": self.root / "sources.list.d",
            "Dir::Etc::Preferences": self.root / "preferences",
            "Dir::Etc::PreferencesParts": self.root / "preferences.d",
            "Dir::State::Lists": self.lists,
            "Dir::State::Status": self.status,
            "Dir::Cache": self.root / "cache",
            "APT::Architecture": "arm64",
            "APT::Architectures::": "arm64",
            "Acquire::Languages": "none",
            # Downloads land in the cache owned by root; apt's sandbox user cannot write there.
            "APT::Sandbox::User": "root",
        }
        return [arg for key, value in options.items() for arg in ("-o", f"{key}={value}")]

    def prepare(self) -> None:
        for sub in ("lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.status.touch()
        line = f"[arch=arm64 signed-by={KEYRING}]"
        self.sources.write_text(
            f"deb {line} {MIRROR} {SUITE} main\n"
            f"deb {line} {SECURITY_MIRROR} {SUITE}-security main\n"
        )
        stamp = self.root / "lists.stamp"
        fresh = stamp.exists() and time.time() - stamp.stat().st_mtime < LISTS_MAX_AGE
        if fresh:
            return
        try:
            run(["apt-get", *self._options(), "-q", "update"])
        except CommandError as err:
            if not any(self.lists.glob("*_Packages*")):
                raise GuestAssetError(
                    f"apt-get update for arm64 failed: {err}",
                    hint="the qemu tier needs Debian's archive once, then runs from its cache",
                ) from err
            return
        stamp.touch()

    def show(self, name: str) -> dict[str, str]:
        """The control fields of the candidate version of ``name``."""
        try:
            text = run(["apt-cache", *self._options(), "show", "--no-all-versions", name]).stdout
        except CommandError as err:
            raise GuestAssetError(f"arm64 package {name} not found: {err}") from err
        return parse_control(text.decode())

    def download(self, name: str, dest: Path) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        try:
            run(["apt-get", *self._options(), "-q", "download", name], cwd=dest)
        except CommandError as err:
            raise GuestAssetError(f"apt-get download {name} (arm64) failed: {err}") from err
        debs = sorted(dest.glob("*.deb"))
        if len(debs) != 1:
            raise GuestAssetError(f"apt-get download {name} left {len(debs)} .deb files")
        return debs[0]


class DebianCache:
    """Unpacked arm64 packages, keyed by the .deb's SHA-256."""

    def __init__(self, root: Path = DEFAULT_CACHE) -> None:
        self.root = root
        self.apt = Apt(root / "apt")
        self._prepared = False

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Serialise fetching and unpacking between test runs sharing the cache."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _apt(self) -> Apt:
        if not self._prepared:
            self.apt.prepare()
            self._prepared = True
        return self.apt

    def package(self, name: str) -> Package:
        """The candidate arm64 package ``name`` and the SHA-256 the signed index gives it."""
        return package_of(self._apt().show(name))

    def kernel_package(self) -> Package:
        """The kernel image package that Debian's ``linux-image-arm64`` currently names."""
        return self.package(kernel_image_of(self._apt().show(KERNEL_METAPACKAGE)))

    def unpacked(self, package: Package, *, kind: str) -> Path:
        """The root of the unpacked ``package``, fetched and unpacked on first use.

        ``kind`` names what the package is for ("kernel", "busybox"): once a new version of a
        kind is unpacked, the older ones are deleted, so a kernel ABI bump does not pile up.
        """
        target = self.root / "unpacked" / package.sha256
        if (target / ".complete").exists():
            return target
        work = self.root / "work" / package.sha256
        shutil.rmtree(work, ignore_errors=True)
        deb = self._apt().download(package.name, work / "deb")
        digest = run(["sha256sum", deb]).stdout.decode().split()[0]
        if digest != package.sha256:
            raise GuestAssetError(f"{deb.name}: sha256 {digest}, index says {package.sha256}")
        tree = work / "tree"
        try:
            run(["dpkg-deb", "-x", deb, tree])
        except CommandError as err:
            raise GuestAssetError(f"cannot unpack {deb.name}: {err}") from err
        (tree / ".complete").write_text(f"{kind} {package.name} {package.version}\n")
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        tree.replace(target)
        shutil.rmtree(work, ignore_errors=True)
        self._prune(keep=target, kind=kind)
        return target

    def _prune(self, *, keep: Path, kind: str) -> None:
        for entry in (self.root / "unpacked").iterdir():
            stamp = entry / ".complete"
            if entry != keep and stamp.exists() and stamp.read_text().split()[0] == kind:
                shutil.rmtree(entry)
