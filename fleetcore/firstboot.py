"""The first-boot ``fleet.yaml`` the flasher drops on the config partition.

Written by ``fleet-image flash`` on the build host, read by the updater on first boot
(enrollment with the Overlord, hostname, optional Wi-Fi); the one model of the file, which
``updater.firstboot`` reads too. After enrolment the updater keeps the
full file on /data and rewrites the FAT copy :meth:`FirstBoot.without_secrets`, so the token is
optional here; the flasher insists on one. Device-safe: pydantic and PyYAML only.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fleetcore.errors import FormatError

FILENAME = "fleet.yaml"
# Where the running device mounts the config partition (PARTLABEL=config).
CONFIG_MOUNT = Path("/boot/config")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WiFi(_Strict):
    ssid: str = Field(min_length=1, max_length=32)
    psk: str | None = Field(
        default=None,
        min_length=8,
        max_length=64,
        description="WPA2 passphrase (8-63 characters) or raw key (64 hex digits); none: open",
    )
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$", description="ISO 3166")

    @field_validator("psk")
    @classmethod
    def _wpa_key(cls, psk: str | None) -> str | None:
        """What WPA2-PSK accepts (IEEE 802.11i): 8-63 printable ASCII, or 64 hex digits."""
        if psk is None:
            return None
        if len(psk) == 64:
            if any(c not in "0123456789abcdefABCDEF" for c in psk):
                raise ValueError("a 64-character key must be hexadecimal")
        elif any(not " " <= c <= "~" for c in psk):
            raise ValueError("a passphrase must be printable ASCII")
        return psk


class RemoteAccess(_Strict):
    """Which remote troubleshooting sessions this device serves (ADR 0074): its owner's veto,
    whatever the Overlord allows. A log tail is on unless refused; shell and forwarding off.
    A shell also ends at the device's own idle and length limits, whatever the Overlord's."""

    logs: bool = True
    shell: bool = False
    forward: bool = False
    shell_idle_s: int = Field(default=1800, ge=10, le=86400, description="no traffic: it ends")
    shell_max_s: int = Field(default=14400, ge=60, le=86400, description="it ends this long after")


class FirstBoot(_Strict):
    """Per-device settings the image cannot carry: the same image goes to every card."""

    overlord_url: str = Field(pattern=r"^https?://")
    enrollment_token: str | None = Field(default=None, min_length=1)
    hostname: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
    wifi: WiFi | None = None
    remote: RemoteAccess = RemoteAccess()

    def without_secrets(self) -> FirstBoot:
        wifi = self.wifi.model_copy(update={"psk": None}) if self.wifi else None
        return self.model_copy(update={"enrollment_token": None, "wifi": wifi})


# fleet.yaml is a few hundred bytes; the cap keeps a hostile card from costing memory.
MAX_BYTES = 64 * 1024


def load_firstboot(data: bytes) -> FirstBoot:
    """Parse fleet.yaml; every defect is one FormatError that never quotes the file's text
    (it holds the enrolment token and the Wi-Fi key, and errors end up in logs)."""
    if len(data) > MAX_BYTES:
        raise FormatError(f"invalid {FILENAME}: larger than {MAX_BYTES} bytes")
    try:
        raw = yaml.safe_load(data)
        return FirstBoot.model_validate(raw)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        raise FormatError(f"invalid {FILENAME}: not YAML ({err.problem} at {where})") from err
    except (yaml.YAMLError, RecursionError, UnicodeDecodeError) as err:
        raise FormatError(f"invalid {FILENAME}: not YAML ({type(err).__name__})") from err
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "top level"
        raise FormatError(f"invalid {FILENAME}: {where}: {first['msg']}") from err


def dump_firstboot(config: FirstBoot) -> bytes:
    # The remote-access veto is written only when the file set it, so a rewritten fleet.yaml
    # never turns defaults into settings that override updater.yaml.
    unset = set() if "remote" in config.model_fields_set else {"remote"}
    return yaml.safe_dump(
        config.model_dump(mode="json", exclude_none=True, exclude=unset), sort_keys=True
    ).encode()
