"""The build configuration file of ``fleet-image build`` (YAML, unknown keys rejected)."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from image.errors import InputError

DEFAULT_CACHE = Path("/var/cache/metrica-fleet/rootfs")


class BuildConfig(BaseModel):
    """What goes into a fleet rootfs. Relative paths are relative to the config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    root_json: Path = Field(description="the release repository's trusted TUF root.json")
    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    hostname: str = Field(default="metrica", pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    packages: tuple[str, ...] = Field(default=(), description="extra Debian packages")
    cache_dir: Path = DEFAULT_CACHE
    pi_gen_dir: Path | None = Field(default=None, description="a pi-gen checkout (pi-gen backend)")
    encrypt_data: StrictBool = Field(
        default=False,
        description="/data is LUKS2, formatted by each device at first boot (ADR 0076); "
        "recorded in the rootfs, where fleet-image assemble reads it unless told otherwise",
    )

    @field_validator("packages")
    @classmethod
    def _package_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not name or not all(c.isalnum() or c in "+-.:" for c in name):
                raise ValueError(f"not a Debian package name: {name!r}")
        return value


def load(path: Path) -> BuildConfig:
    """Load and validate a build config; relative paths become absolute, taken from its folder."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise InputError(f"cannot read build config {path}: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise InputError(f"build config {path} is not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise InputError(f"build config {path} must be a mapping of settings")
    try:
        config = BuildConfig.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "top level"
        raise InputError(f"build config {path}: {where}: {first['msg']}") from err
    # Absolute paths: stage scripts and pi-gen run in other working folders.
    base = path.resolve().parent
    updates: dict[str, Path] = {
        "root_json": base / config.root_json,
        "cache_dir": base / config.cache_dir,
    }
    if config.pi_gen_dir is not None:
        updates["pi_gen_dir"] = base / config.pi_gen_dir
    config = config.model_copy(update=updates)
    if not config.root_json.is_file():
        raise InputError(f"build config {path}: root_json {config.root_json} does not exist")
    return config
