"""The role-image recipe: which Debian packages make the image and how it runs.

Loaded strictly (unknown keys rejected); every problem is one :class:`RecipeError` line
naming the file and the offending key.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fleetcore.rolebundle.spec import first_error
from image.roleimage.errors import RecipeError

PackageName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9+.-]+$")]
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Arch(StrEnum):
    """Debian architectures a role image can be built for."""

    ARM64 = "arm64"
    AMD64 = "amd64"

    @property
    def triplet(self) -> str:
        return {Arch.ARM64: "aarch64-linux-gnu", Arch.AMD64: "x86_64-linux-gnu"}[self]

    @property
    def variant(self) -> str | None:
        """The OCI platform variant Docker records for this architecture."""
        return "v8" if self is Arch.ARM64 else None


def _relative(path: str, what: str) -> str:
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts or str(pure) != path.rstrip("/"):
        raise ValueError(f"{what} {path!r} must be a plain relative path such as usr/share/doc")
    return str(pure)


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    suite: str = Field(default="bookworm", pattern=r"^[a-z]+$")
    mirror: str = Field(default="http://deb.debian.org/debian", pattern=r"^https?://\S+$")
    # the suite's security updates; null leaves them out
    security_mirror: str | None = Field(
        default="http://deb.debian.org/debian-security", pattern=r"^https?://\S+$"
    )
    updates: bool = True
    components: tuple[str, ...] = Field(default=("main",), min_length=1)
    packages: tuple[PackageName, ...] = Field(min_length=1)
    # resolved (apt needs them to satisfy dependencies) but neither downloaded nor unpacked
    exclude: tuple[PackageName, ...] = ()
    # paths (after the merged-/usr move) left out of the image, with everything below them
    prune: tuple[str, ...] = ()
    # fnmatch patterns of paths kept although a prune entry covers them
    keep: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    # numeric only: the image has no /etc/passwd unless a package ships one
    user: str | None = Field(default=None, pattern=r"^[0-9]+(:[0-9]+)?$")
    env: dict[str, str] = {}
    workdir: str = Field(default="/", pattern=r"^/")
    labels: dict[str, str] = {}

    @field_validator("components")
    @classmethod
    def _components(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if item not in {"main", "contrib", "non-free", "non-free-firmware"}:
                raise ValueError(f"unknown archive component {item!r}")
        return value

    @field_validator("prune")
    @classmethod
    def _prune(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_relative(item, "prune path") for item in value)

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _ENV_NAME.fullmatch(key):
                raise ValueError(f"environment variable name {key!r} is not valid")
        return value

    @model_validator(mode="after")
    def _lists(self) -> Recipe:
        for field in ("packages", "exclude"):
            names: tuple[str, ...] = getattr(self, field)
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{field} lists {', '.join(dupes)} more than once")
        both = sorted(set(self.packages) & set(self.exclude))
        if both:
            raise ValueError(f"{', '.join(both)} both requested and excluded")
        if self.entrypoint is None and self.cmd is None:
            raise ValueError("set entrypoint or cmd: the image must say what it runs")
        return self


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    if first["type"] == "missing":
        return f"missing key '{'.'.join(str(p) for p in first['loc'])}'"
    return first_error(err)


def parse(data: Any, *, source: str) -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: expected a mapping at the top level")
    try:
        return Recipe.model_validate(data)
    except ValidationError as err:
        raise RecipeError(f"{source}: {_first_error(err)}") from err


def load(path: Path) -> Recipe:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise RecipeError(f"cannot read recipe {path}: {err.strerror}") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise RecipeError(f"{path}: not valid YAML ({err.__class__.__name__})") from err
    return parse(data, source=str(path))
