"""``role.yaml``: what a role bundle declares about itself, loaded strictly.

The compose file says how to run the role; ``role.yaml`` says what it is allowed to touch
(host devices, published ports, state directories, privileges with a justification), which
images it runs (pinned by digest) and its resource limits. :mod:`.policy` checks that the
compose file stays inside what ``role.yaml`` declares.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fleetcore.rolebundle.errors import BundleError
from fleetcore.version import Version

ROLE_FILE = "role.yaml"
ENV_TEMPLATE = ".env.template"
CONFIG_DIR = "config"
# Written by the manager into a staged version; a shipped bundle must not contain them.
ENV_FILE = ".env"
OVERRIDE_FILE = "fleet.override.yaml"
# In a staged version while a start with a freshly rendered .env runs: a power cut before
# compose recreated the containers leaves it, and the next apply restarts the role again.
APPLYING_FILE = ".env.applying"
SAFE_MODE_ROLE = "safe-mode"
# The safe-mode status page's port: it must stay free while other roles run beside safe mode.
SAFE_MODE_PORT = 8088

ROLE_NAME_RE = r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$"
SERVICE_NAME_RE = r"^[a-z][a-z0-9_-]{0,62}$"
# Either a registry reference pinned by manifest digest (``repo[:tag]@sha256:<hex>``) or a
# local image ID (``sha256:<hex>``), the config digest of an image loaded without a registry.
# Both are content addresses, so the bytes that run cannot change under the same reference.
IMAGE_REF_RE = (
    r"^(?:(?:[a-z0-9][a-z0-9.-]*(?::[0-9]+)?/)?[a-z0-9]+(?:[._/-][a-z0-9]+)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?@)?sha256:[0-9a-f]{64}$"
)
# A digest the role's author could not resolve; validation accepts it, packing refuses it.
UNRESOLVED_DIGEST = "sha256:" + "0" * 64
_IMAGE_REF = re.compile(IMAGE_REF_RE)

RoleName = Annotated[str, Field(pattern=ROLE_NAME_RE)]
ServiceName = Annotated[str, Field(pattern=SERVICE_NAME_RE)]
StateName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]


def is_pinned(image: str) -> bool:
    return bool(_IMAGE_REF.fullmatch(image))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Protocol(StrEnum):
    TCP = "tcp"
    UDP = "udp"


class PrivilegeKind(StrEnum):
    PRIVILEGED = "privileged"
    HOST_NETWORK = "host-network"
    HOST_PID = "host-pid"
    HOST_MOUNT = "host-mount"


class PortSpec(_Strict):
    port: int = Field(ge=1, le=65535)
    protocol: Protocol = Protocol.TCP
    description: str = ""


class DeviceSpec(_Strict):
    path: str = Field(pattern=r"^/dev/[A-Za-z0-9_.:-]+(?:/[A-Za-z0-9_.:-]+)*$")
    description: str = ""


class Limits(_Strict):
    memory: str = Field(pattern=r"^[1-9][0-9]{0,5}[kmg]$", description="e.g. 256m")
    cpus: float = Field(gt=0, le=64)
    pids: int = Field(default=256, ge=16, le=32768)


class Privilege(_Strict):
    service: ServiceName
    kind: PrivilegeKind
    path: str | None = Field(default=None, description="host path, for host-mount only")
    justification: str = Field(min_length=20)

    @model_validator(mode="after")
    def _path_for_mounts(self) -> Privilege:
        if self.kind is PrivilegeKind.HOST_MOUNT:
            if self.path is None or not self.path.startswith("/") or ".." in self.path.split("/"):
                raise ValueError("a host-mount privilege needs an absolute path without '..'")
        elif self.path is not None:
            raise ValueError(f"path is only meaningful for host-mount, not {self.kind.value}")
        return self


class HealthSpec(_Strict):
    timeout_s: int = Field(default=120, ge=5, le=1800)


class RoleSpec(_Strict):
    format: Literal[1] = 1
    name: RoleName
    version: Version
    description: str = Field(min_length=1)
    compose: str = "compose.yaml"
    images: tuple[str, ...] = Field(min_length=1)
    devices: tuple[DeviceSpec, ...] = ()
    ports: tuple[PortSpec, ...] = ()
    state: tuple[StateName, ...] = ()
    health: HealthSpec = HealthSpec()
    limits: dict[ServiceName, Limits] = Field(min_length=1)
    privileges: tuple[Privilege, ...] = ()

    @model_validator(mode="after")
    def _safe_mode_port_free(self) -> RoleSpec:
        if self.name != SAFE_MODE_ROLE and any(p.port == SAFE_MODE_PORT for p in self.ports):
            raise ValueError(f"port {SAFE_MODE_PORT} is reserved for the safe-mode status page")
        return self

    @model_validator(mode="after")
    def _images_pinned(self) -> RoleSpec:
        for image in self.images:
            if not is_pinned(image):
                raise ValueError(f"image {image!r} is not pinned by digest (name@sha256:<hex>)")
        return self

    def privilege(
        self, service: str, kind: PrivilegeKind, path: str | None = None
    ) -> Privilege | None:
        for item in self.privileges:
            if item.service == service and item.kind is kind and item.path == path:
                return item
        return None


def first_error(err: ValidationError) -> str:
    """The first validation error as one line: where, then what."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "top level"
    if first["type"] == "extra_forbidden":
        return f"unknown key '{where}'"
    message = first["msg"].removeprefix("Value error, ")
    return f"{where}: {message}"


def parse_spec(data: Any, *, source: str = ROLE_FILE) -> RoleSpec:
    if not isinstance(data, dict):
        raise BundleError(f"{source}: expected a mapping at the top level")
    try:
        return RoleSpec.model_validate(data)
    except ValidationError as err:
        raise BundleError(f"{source}: {first_error(err)}") from err


def load_yaml(text: str, *, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise BundleError(f"{source}: not valid YAML ({err.__class__.__name__})") from err


def load_spec(text: str) -> RoleSpec:
    return parse_spec(load_yaml(text, source=ROLE_FILE))
