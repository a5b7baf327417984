"""The package closure through a private apt configuration.

apt runs with its own sources, lists, status file and archive cache below one folder, so the
host's apt state is neither read nor changed and any host can build for any architecture.
Sources are ``signed-by`` the Debian archive keyring: apt refuses an index whose signature does
not verify, and checks each downloaded .deb against the SHA-256 in that index. Cached .debs
(apt only compares their size) are hashed here against the same index before use.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fleetcore.atomic import atomic_write
from fleetcore.errors import CommandError
from fleetcore.filelock import held
from fleetcore.run import run, run_text
from image.roleimage.errors import PackageError
from image.roleimage.recipe import Arch, Recipe

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
DEFAULT_CACHE = Path("/var/cache/metrica-fleet/roleimage")

_INST = re.compile(r"^Inst (\S+) \((\S+) .*\[(\S+)\]\)", re.MULTILINE)
_URI = re.compile(r"^'(\S+)' (\S+) ([0-9]+) SHA256:([0-9a-f]{64})$", re.MULTILINE)


@dataclass(frozen=True, order=True)
class PackageRef:
    name: str
    version: str
    arch: str

    @property
    def pin(self) -> str:
        return f"{self.name}={self.version}"


@dataclass(frozen=True)
class Deb:
    ref: PackageRef
    path: Path


def sources(recipe: Recipe, arch: Arch) -> str:
    """The sources.list text: the suite, its updates and security suites, signed-by."""
    opts = f"[arch={arch.value} signed-by={KEYRING}]"
    components = " ".join(recipe.components)
    lines = [f"deb {opts} {recipe.mirror} {recipe.suite} {components}"]
    if recipe.updates:
        lines.append(f"deb {opts} {recipe.mirror} {recipe.suite}-updates {components}")
    if recipe.security_mirror is not None:
        lines.append(f"deb {opts} {recipe.security_mirror} {recipe.suite}-security {components}")
    return "\n".join(lines) + "\n"


def parse_simulation(text: str) -> list[PackageRef]:
    """The packages an ``apt-get -s install`` would unpack, sorted by name."""
    return sorted(PackageRef(m[1], m[2], m[3]) for m in _INST.finditer(text))


@contextlib.contextmanager
def shared_cache(root: Path) -> Iterator[None]:
    """Exclusive use of the apt folder ``root`` among the processes that build into it."""
    with contextlib.ExitStack() as stack:
        try:
            root.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(held(root.parent / f".{root.name}.lock"))
        except OSError as err:
            raise PackageError(
                f"cannot lock {root} for apt's lists and packages: {err.strerror}",
                hint="pass --cache DIR with a folder you can write",
            ) from err
        yield


class AptRoot:
    """One private apt state folder (lists, status, archives) for a suite and architecture."""

    def __init__(self, root: Path, recipe: Recipe, arch: Arch) -> None:
        self.root = root
        self.arch = arch
        self.archives = root / "archives"
        try:
            for sub in ("lists/partial", "archives/partial", "sources.list.d", "preferences.d"):
                (root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise PackageError(
                f"cannot use {root} for apt's lists and packages: {err.strerror}",
                hint="pass --cache DIR with a folder you can write",
            ) from err
        status = root / "status"
        if not status.exists():
            atomic_write(status, b"")
        text = sources(recipe, arch).encode()
        source_list = root / "sources.list"
        if not source_list.exists() or source_list.read_bytes() != text:
            atomic_write(source_list, text)

    def _options(self) -> list[str]:
        settings = {
            "Dir::Etc::SourceList": self.root / "sources.list",
            "Dir::Etc::SourceParts": self.root / "sources.list.d",
            "Dir::Etc::Preferences": self.root / "preferences",
            "Dir::Etc::PreferencesParts": self.root / "preferences.d",
            "Dir::State::Lists": self.root / "lists",
            "Dir::State::Status": self.root / "status",
            "Dir::Cache": self.root / "cache",
            "Dir::Cache::Archives": self.archives,
            "APT::Architecture": self.arch.value,
            "APT::Architectures::": self.arch.value,
            "APT::Install-Recommends": "false",
            "Acquire::Languages": "none",
            "APT::Sandbox::User": "root",
        }
        return [arg for key, value in settings.items() for arg in ("-o", f"{key}={value}")]

    def _apt(self, *args: str, cwd: Path | None = None) -> str:
        if not KEYRING.is_file():
            raise PackageError(
                f"{KEYRING} is missing",
                hint="install debian-archive-keyring (apt verifies with it)",
            )
        try:
            return run_text(["apt-get", *self._options(), *args], cwd=cwd)
        except CommandError as err:
            errors = [ln for ln in err.stderr.splitlines() if ln.startswith("E:")]
            detail = errors[0] if errors else str(err)
            verb = next(arg for arg in args if not arg.startswith("-"))
            raise PackageError(f"apt-get {verb}: {detail}") from err

    def update(self) -> None:
        """Fetch the signed indexes, then drop cached .debs no index offers any more (apt's
        autoclean), so the cache holds at most the current versions."""
        self._apt("-q", "update")
        self._apt("-q", "autoclean")

    def resolve(self, packages: tuple[str, ...]) -> list[PackageRef]:
        """The full dependency closure of ``packages`` (an empty system), without Recommends."""
        refs = parse_simulation(self._apt("-s", "install", *packages))
        if not refs:
            raise PackageError(f"apt resolved nothing for {' '.join(packages)}")
        return refs

    def download(self, refs: list[PackageRef]) -> list[Deb]:
        """The .debs of ``refs``, from the cache when their hash matches the signed index."""
        listing = self._apt("download", "--print-uris", *(r.pin for r in refs))
        expected = {m[2]: (int(m[3]), m[4]) for m in _URI.finditer(listing)}
        names = {ref: deb_filename(ref) for ref in refs}
        missing = [ref for ref, name in names.items() if name not in expected]
        if missing:
            raise PackageError(f"apt gave no download for {missing[0].pin}")
        stale = [
            ref for ref in refs if not _matches(self.archives / names[ref], expected[names[ref]])
        ]
        if stale:
            for path in (self.archives / names[ref] for ref in stale):
                path.unlink(missing_ok=True)
            self._apt("-q", "download", *(r.pin for r in stale), cwd=self.archives)
            for ref in stale:
                if not _matches(self.archives / names[ref], expected[names[ref]]):
                    raise PackageError(f"{names[ref]} does not match its signed index entry")
        return [Deb(ref, self.archives / names[ref]) for ref in refs]


def deb_filename(ref: PackageRef) -> str:
    """The file name apt gives a downloaded package (the epoch colon URL-encoded)."""
    return f"{ref.name}_{ref.version.replace(':', '%3a')}_{ref.arch}.deb"


def _matches(path: Path, expected: tuple[int, str]) -> bool:
    size, sha256 = expected
    try:
        if path.stat().st_size != size:
            return False
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest() == sha256
    except FileNotFoundError:
        return False


def data_tar(deb: Path) -> bytes:
    """The package's file-system tar (``dpkg-deb --fsys-tarfile``); no maintainer scripts."""
    try:
        return run(["dpkg-deb", "--fsys-tarfile", deb]).stdout
    except CommandError as err:
        raise PackageError(f"{deb.name} is not a readable Debian package: {err}") from err
