"""The first-boot ``fleet.yaml`` the flasher drops on the config (FAT) partition.

Read with a strict model of its own until ``fleetcore.firstboot`` (the image builder's schema)
lands; the fields are the shared contract: overlord_url, enrollment_token, hostname, wifi.
After enrolment the enrollment token and Wi-Fi key move to /data and leave the FAT partition.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleetcore.atomic import atomic_write, atomic_write_fat
from updater.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Wifi(_Strict):
    ssid: str = Field(min_length=1, max_length=32)
    psk: str | None = Field(default=None, min_length=8, max_length=64)
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")


class FirstBoot(_Strict):
    overlord_url: str = Field(pattern=r"^https?://")
    enrollment_token: str | None = Field(default=None, min_length=1)
    hostname: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
    wifi: Wifi | None = None

    def without_secrets(self) -> FirstBoot:
        wifi = self.wifi.model_copy(update={"psk": None}) if self.wifi else None
        return self.model_copy(update={"enrollment_token": None, "wifi": wifi})


def load_firstboot(path: Path) -> FirstBoot:
    try:
        data = yaml.safe_load(path.read_text())
        return FirstBoot.model_validate(data)
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "top level"
        raise ConfigError(f"invalid {path} at {where}: {first['msg']}") from err


def dump_firstboot(first: FirstBoot) -> bytes:
    return yaml.safe_dump(first.model_dump(mode="json", exclude_none=True), sort_keys=True).encode()


def move_secrets(fat_copy: Path, data_copy: Path) -> None:
    """Keep the full fleet.yaml on /data (0600), then strip its secrets from the FAT copy.

    The /data copy is written first, so a power cut in between leaves the secrets in one
    place or both, never in none.
    """
    if not fat_copy.exists():
        return
    first = load_firstboot(fat_copy)
    if first.enrollment_token is None and (first.wifi is None or first.wifi.psk is None):
        return
    data_copy.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(data_copy, dump_firstboot(first), mode=0o600)
    atomic_write_fat(fat_copy, dump_firstboot(first.without_secrets()))
