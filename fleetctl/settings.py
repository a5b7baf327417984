"""Where fleetctl finds the Overlord and its token: flags, then environment, then a 0600 file.

The file is ``$XDG_CONFIG_HOME/metrica-fleet/fleetctl.yaml`` (``~/.config`` without it),
written by ``fleetctl login``. A token is as good as a password, so a file that others may
read is refused rather than used, as ssh does with a private key.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleetcore.atomic import atomic_write, fsync_dir
from fleetctl.errors import ConfigFileError, UsageError

URL_ENV = "FLEET_URL"
TOKEN_ENV = "FLEET_TOKEN"  # noqa: S105 (the variable's name, not a token)
_MAX_FILE_BYTES = 64 << 10
_MAX_TOKEN_CHARS = 512


class CredentialsFile(BaseModel):
    """The file's schema: unknown keys are refused, so a typo does not silently not apply."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(min_length=1, max_length=2000)
    token: str = Field(min_length=1, max_length=_MAX_TOKEN_CHARS)


@dataclass(frozen=True)
class Credentials:
    """An Overlord base URL (no trailing slash) and the bearer token to send it."""

    url: str
    token: str

    def __repr__(self) -> str:
        return f"Credentials(url={self.url!r}, token='***')"


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "metrica-fleet" / "fleetctl.yaml"


def check_url(url: str) -> str:
    """An http(s) base URL without its trailing slash; anything else is a usage error."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"not an http(s) URL: {url.strip()[:200]!r}",
            hint="give the Overlord's base URL, for example https://overlord.example.com",
        )
    if parts.username or parts.password:
        raise UsageError(
            "the URL must not carry a user name or password", hint="pass the token with --token"
        )
    return url.strip().rstrip("/")


def check_token(token: str) -> str:
    token = token.strip()
    if not token or len(token) > _MAX_TOKEN_CHARS or not token.isprintable() or " " in token:
        raise UsageError(
            "the token is empty or not a single printable word",
            hint="copy the token exactly as 'fleetctl tokens create' or 'overlord token create' "
            "printed it",
        )
    return token


def load_file(path: Path) -> CredentialsFile:
    """Read the credentials file, refusing one that group or others may read or write."""
    try:
        # O_NOFOLLOW, and the mode read from the open file: what is checked is what is read.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        if isinstance(err, FileNotFoundError):
            raise  # no file: the caller says which setting is missing
        raise ConfigFileError(
            f"cannot read {path}: {err.strerror}",
            hint="it must be a regular file you own (fleetctl login writes it)",
        ) from err
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ConfigFileError(f"{path} is not a regular file")
        if info.st_mode & 0o077:
            raise ConfigFileError(
                f"{path} is readable or writable by others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); refusing to use the token in it",
                hint=f"chmod 600 {path}",
            )
        data = handle.read(_MAX_FILE_BYTES + 1)
    if len(data) > _MAX_FILE_BYTES:
        raise ConfigFileError(f"{path} is larger than {_MAX_FILE_BYTES} bytes")
    try:
        raw = yaml.safe_load(data.decode("utf-8"))
        return CredentialsFile.model_validate(raw)
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigFileError(
            f"{path} is not valid YAML", hint="run fleetctl login again to rewrite it"
        ) from err
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the file"
        raise ConfigFileError(
            f"{path}: {where}: {first['msg']}",
            hint="the file holds exactly 'url' and 'token'; run fleetctl login to rewrite it",
        ) from None


def save_file(path: Path, credentials: Credentials) -> None:
    """Write the credentials file atomically, mode 0600 from its first byte."""
    fresh = not path.parent.exists()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if fresh:
        fsync_dir(path.parent.parent)
    body = yaml.safe_dump({"url": credentials.url, "token": credentials.token}, sort_keys=True)
    atomic_write(path, body.encode(), mode=0o600)


def resolve(
    *, url: str | None, token: str | None, environ: Mapping[str, str] | None = None
) -> Credentials:
    """Flags first, then ``FLEET_URL``/``FLEET_TOKEN``, then the credentials file."""
    environ = os.environ if environ is None else environ
    url = url or environ.get(URL_ENV) or None
    token = token or environ.get(TOKEN_ENV) or None
    if url is None or token is None:
        path = config_path(environ)
        try:
            stored = load_file(path)
        except FileNotFoundError:
            missing = "URL" if url is None else "token"
            raise UsageError(
                f"no Overlord {missing} given",
                hint=f"pass --url and --token, set {URL_ENV} and {TOKEN_ENV}, "
                "or run 'fleetctl login --url URL --token TOKEN' once",
            ) from None
        url = url or stored.url
        token = token or stored.token
    return Credentials(url=check_url(url), token=check_token(token))
