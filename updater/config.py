"""Typed updater configuration, layered and validated once.

Layers, later ones winning key by key: the image's ``/etc/metrica-fleet/updater.yaml``, the
device's overrides ``/data/fleet/updater.yaml``, then the first-boot ``fleet.yaml`` (or its
copy on /data once enrolment moved it off the FAT partition). Unknown keys are rejected in
every layer, so a typo fails loudly instead of being ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fleetcore import redact
from fleetcore.firstboot import RemoteAccess
from fleetcore.release import Hardware
from updater.errors import ConfigError
from updater.firstboot import FirstBoot, load_firstboot
from updater.paths import Roots
from updater.proxy import Proxy, ProxyRules


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FirmwareBackend(StrEnum):
    TRYBOOT = "tryboot"
    SIMULATED = "simulated"


class CheckLevel(StrEnum):
    """greenboot's split: a failed required check fails the trial, a wanted one only warns."""

    REQUIRED = "required"
    WANTED = "wanted"
    OFF = "off"


class FirmwareConfig(_Strict):
    backend: FirmwareBackend = FirmwareBackend.TRYBOOT
    reboot_command: tuple[str, ...] = ("systemctl", "reboot")
    tryboot_command: tuple[str, ...] = ("reboot", "0 tryboot")


class HealthConfig(_Strict):
    deadline_s: float = Field(default=300.0, gt=0)
    check_timeout_s: float = Field(default=60.0, gt=0)
    required_units: tuple[str, ...] = ()
    wanted_units: tuple[str, ...] = ()
    docker: CheckLevel = CheckLevel.REQUIRED
    roles: CheckLevel = CheckLevel.WANTED


class TransferConfig(_Strict):
    parallel_fetches: int = Field(default=3, ge=1, le=16, description="connections")
    pipeline_depth: int = Field(default=16, ge=1, le=128, description="GETs in flight each")
    retries: int = Field(default=6, ge=0)
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    timeout_s: float = Field(default=30.0, gt=0)
    checkpoint_bytes: int = Field(default=64 << 20, gt=0)
    max_image_bytes: int = Field(default=8 << 30, gt=0)
    min_free_data_bytes: int = Field(default=64 << 20, ge=0)


class ProxyConfig(_Strict):
    """Overrides the proxy environment variables (see :mod:`updater.proxy`)."""

    url: str | None = Field(
        default=None,
        repr=False,
        description="http://[user:pass@]host:port for http:// and https://",
    )
    no_proxy: tuple[str, ...] | None = Field(
        default=None, description="hosts, domains, IPs or CIDRs reached directly; * for all"
    )

    @model_validator(mode="after")
    def _parses(self) -> ProxyConfig:
        if self.url is not None:
            try:
                Proxy.parse(self.url)
            except ConfigError as err:
                raise ValueError(str(err)) from err
        return self


class UpdaterConfig(_Strict):
    overlord_url: str | None = None
    repository_url: str | None = Field(
        default=None, description="release repository; defaults to <overlord_url>/tuf"
    )
    enrollment_token: str | None = Field(default=None, repr=False)
    hostname: str | None = None
    hardware: Hardware | None = Field(default=None, description="detected when unset")
    disk: Path | None = Field(default=None, description="boot disk; found by PARTLABEL if unset")
    trust_root: Path = Path("/etc/metrica-fleet/root.json")
    poll_min_s: float = Field(default=30.0, gt=0)
    poll_max_s: float = Field(default=120.0, gt=0)
    offline_backoff_max_s: float = Field(default=900.0, gt=0)
    request_timeout_s: float = Field(default=30.0, gt=0)
    queue_max_items: int = Field(default=1000, ge=1)
    node_exporter: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9.:\[\]-]+:[0-9]{1,5}$",
        description="host:port where the Overlord's Prometheus reaches this device's node exporter",
    )
    max_trial_attempts: int = Field(default=3, ge=1)
    max_install_attempts: int = Field(
        default=3, ge=1, description="unexpected failures (crash, out of memory) before giving up"
    )
    firmware: FirmwareConfig = FirmwareConfig()
    health: HealthConfig = HealthConfig()
    transfer: TransferConfig = TransferConfig()
    proxy: ProxyConfig = ProxyConfig()
    remote: RemoteAccess = RemoteAccess()

    @model_validator(mode="after")
    def _poll_range(self) -> UpdaterConfig:
        if self.poll_min_s > self.poll_max_s:
            raise ValueError("poll_min_s must not exceed poll_max_s")
        return self

    def proxy_rules(self, environ: Mapping[str, str] | None = None) -> ProxyRules:
        """This configuration's proxy over the process environment's (``os.environ``)."""
        return ProxyRules.resolve(self.proxy.url, self.proxy.no_proxy, environ)

    @property
    def release_url(self) -> str | None:
        if self.repository_url:
            return self.repository_url.rstrip("/")
        if self.overlord_url:
            return f"{self.overlord_url.rstrip('/')}/tuf"
        return None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from err
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        # Where and what, without PyYAML's snippet of the line: it may hold a password.
        mark = err.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        raise ConfigError(f"{path} is not valid YAML: {err.problem} at {where}") from err
    except (yaml.YAMLError, RecursionError) as err:
        raise ConfigError(f"{path} is not valid YAML ({type(err).__name__})") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _validate(data: dict[str, Any], sources: list[Path]) -> UpdaterConfig:
    try:
        return UpdaterConfig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "top level"
        raise ConfigError(
            f"invalid updater configuration at {where}: {first['msg']}",
            hint=f"layers read: {', '.join(str(s) for s in sources) or 'none'}",
        ) from err


def firstboot_layer(first: FirstBoot | None) -> dict[str, Any]:
    if first is None:
        return {}
    layer: dict[str, Any] = {"overlord_url": first.overlord_url, "hostname": first.hostname}
    if first.enrollment_token:
        layer["enrollment_token"] = first.enrollment_token
    if "remote" in first.model_fields_set:
        layer["remote"] = first.remote.model_dump(exclude_unset=True)
    return layer


def load_config(roots: Roots) -> UpdaterConfig:
    """Merge the layers below ``roots`` and validate the result."""
    data: dict[str, Any] = {}
    sources = []
    for path in (roots.image_config, roots.data_config):
        layer = _read_yaml(path)
        if layer:
            sources.append(path)
            # Validate each layer alone too, so an error names the file that holds it.
            _validate(_merge(data, layer), [*sources])
        data = _merge(data, layer)
    first_path = roots.fleet_yaml if roots.fleet_yaml.exists() else roots.firstboot_copy
    first = load_firstboot(first_path) if first_path.exists() else None
    if first is not None:
        sources.append(first_path)
    data = _merge(data, firstboot_layer(first))
    config = _validate(data, sources)
    redact.SECRETS.add(config.enrollment_token)  # masked in logs from now on
    return config
