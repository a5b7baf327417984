"""The compose-file policy: a role's compose file may only use what ``role.yaml`` declares.

Each rule raises :class:`BundleError` with one sentence naming the service and the key, so an
author fixes one thing at a time. The rules:

- only known keys, at the top level and per service (no ``build``, ``cap_add``,
  ``security_opt``, named volumes, ...); resource limits live in ``role.yaml``;
- every image pinned by digest and listed in ``role.yaml``; every service has limits;
- every service has a healthcheck that is not disabled;
- ``privileged``, ``network_mode: host``, ``pid: host`` and absolute host mounts only with a
  matching, justified ``privileges`` entry in ``role.yaml`` (host mounts read-only);
- bind mounts inside the bundle (read-only) or under ``${ROLE_STATE}/<declared state dir>``;
- published ports and host devices only as declared in ``role.yaml``;
- no host mount reaches the container engine or the updater (``HOST_DENIED``): a socket,
  anything under ``/run``, ``/var/run``, the engines' state or ``/data/fleet`` is refused in
  every mode (``:ro`` does not restrict connecting to a socket), checked on the path as
  written and as resolved on this device; a mount of a parent of those (``/`` for the node
  exporter) is accepted only when the service hides each of them under a ``tmpfs`` at the
  matching target, which an unprivileged container cannot unmount.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fleetcore.rolebundle.errors import BundleError
from fleetcore.rolebundle.spec import (
    ENV_FILE,
    PrivilegeKind,
    Protocol,
    RoleSpec,
    is_pinned,
)

STATE_VAR = "ROLE_STATE"

_TOP_LEVEL = {"services", "version"}
_SERVICE_KEYS = {
    "image",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "healthcheck",
    "volumes",
    "ports",
    "expose",
    "devices",
    "restart",
    "depends_on",
    "user",
    "working_dir",
    "labels",
    "logging",
    "privileged",
    "network_mode",
    "pid",
    "tmpfs",
    "read_only",
    "stop_grace_period",
    "stop_signal",
    "group_add",
    "init",
    "cap_drop",
    "hostname",
    "ulimits",
}
_LIMIT_KEYS = {"mem_limit", "memswap_limit", "cpus", "cpu_shares", "pids_limit", "deploy"}
# Host paths no role may mount, in any mode: the engines' sockets and state, and the
# updater's own state (a role writing there could rewrite what the updater trusts).
HOST_DENIED = (
    "/run",
    "/var/run",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/data/fleet",
)
# What a mount of a parent must hide: where sockets live, and the updater's state. (The
# engines' state under /var/lib holds no socket; a parent mount of it reads, never controls.)
MUST_HIDE = ("/run", "/var/run", "/data/fleet")
_STATE_PREFIX = re.compile(r"^\$(?:\{ROLE_STATE\}|ROLE_STATE)(?P<rest>/.*)?$")
_VARIABLE = re.compile(r"\$(?:\{[^}]*\}|[A-Za-z_])")
_PORT = re.compile(
    r"^(?:(?P<ip>[0-9.]+|\[[0-9a-fA-F:]+\]):)?(?P<host>[0-9]+):(?P<target>[0-9]+)"
    r"(?:/(?P<proto>tcp|udp))?$"
)


def check_compose(doc: Any, spec: RoleSpec, bundle_dir: Path) -> None:
    """Raise :class:`BundleError` for the first rule ``doc`` breaks."""
    source = spec.compose
    if not isinstance(doc, dict):
        raise BundleError(f"{source}: expected a mapping at the top level")
    for key in doc:
        if key == "volumes":
            raise BundleError(
                f"{source}: named volumes live outside the role's data directory",
                hint=f"bind a directory under ${{{STATE_VAR}}} declared in role.yaml state",
            )
        if key not in _TOP_LEVEL and not str(key).startswith("x-"):
            raise BundleError(f"{source}: unknown top-level key '{key}'")
    services = doc.get("services")
    if not isinstance(services, dict) or not services:
        raise BundleError(f"{source}: no services")
    declared = set(spec.limits)
    for name in services:
        if name not in declared:
            raise BundleError(f"{source}: service '{name}' has no limits in role.yaml")
    for name in declared - set(services):
        raise BundleError(f"role.yaml: limits name service '{name}', which the compose file lacks")
    used_images: set[str] = set()
    for name, service in services.items():
        if not isinstance(service, dict):
            raise BundleError(f"{source}: service '{name}' must be a mapping")
        _ServiceCheck(spec, bundle_dir, str(name), service).run()
        used_images.add(service["image"])
    for image in spec.images:
        if image not in used_images:
            raise BundleError(f"role.yaml: image {image} is listed but no service runs it")


class _ServiceCheck:
    def __init__(self, spec: RoleSpec, bundle_dir: Path, name: str, service: dict[Any, Any]):
        self.spec = spec
        self.bundle_dir = bundle_dir
        self.name = name
        self.service = service

    def fail(self, message: str, hint: str | None = None) -> BundleError:
        return BundleError(f"{self.spec.compose}: service '{self.name}': {message}", hint=hint)

    def run(self) -> None:
        self.keys()
        self.image()
        self.healthcheck()
        self.privileges()
        self.host_binds: list[tuple[str, str]] = []
        self.tmpfs: set[str] = set()
        for entry in _as_list(self.service.get("volumes")):
            self.volume(entry)
        for entry in _as_list(self.service.get("tmpfs")):
            self.tmpfs.add(posixpath.normpath(str(entry).split(":")[0]))
        self.host_reach()
        for entry in _as_list(self.service.get("ports")):
            self.port(entry)
        for entry in _as_list(self.service.get("devices")):
            self.device(entry)
        for entry in _as_list(self.service.get("env_file")):
            self.env_file(entry)

    def keys(self) -> None:
        for key in self.service:
            if key in _LIMIT_KEYS:
                raise self.fail(
                    f"'{key}' is not allowed", hint="set resource limits in role.yaml limits"
                )
            if key not in _SERVICE_KEYS:
                raise self.fail(f"key '{key}' is not allowed")

    def image(self) -> None:
        image = self.service.get("image")
        if not isinstance(image, str):
            raise self.fail("no image")
        if not is_pinned(image):
            raise self.fail(
                f"image {image!r} is not pinned by digest",
                hint="use name:tag@sha256:<digest> (or a local image ID sha256:<id>)",
            )
        if image not in self.spec.images:
            raise self.fail(f"image {image} is not listed in role.yaml images")

    def healthcheck(self) -> None:
        check = self.service.get("healthcheck")
        if not isinstance(check, dict) or check.get("disable") is True:
            raise self.fail("no healthcheck", hint="the health gate needs one per service")
        test = check.get("test")
        if not test or test == ["NONE"] or test == "NONE":
            raise self.fail("no healthcheck", hint="the health gate needs one per service")

    def _require(self, kind: PrivilegeKind, what: str, path: str | None = None) -> None:
        if self.spec.privilege(self.name, kind, path) is None:
            raise self.fail(
                f"{what} needs a justified privileges entry in role.yaml",
                hint=f"add {{service: {self.name}, kind: {kind.value}"
                + (f", path: {path}" if path else "")
                + ", justification: ...}",
            )

    def privileges(self) -> None:
        privileged = self.service.get("privileged", False)
        if privileged not in (True, False):
            raise self.fail("privileged must be true or false")
        if privileged:
            self._require(PrivilegeKind.PRIVILEGED, "privileged mode")
        network = self.service.get("network_mode")
        if network == "host":
            self._require(PrivilegeKind.HOST_NETWORK, "host network")
        elif network not in (None, "bridge", "none"):
            raise self.fail(f"network_mode {network!r} is not allowed")
        pid = self.service.get("pid")
        if pid == "host":
            self._require(PrivilegeKind.HOST_PID, "host pid namespace")
        elif pid is not None:
            raise self.fail(f"pid {pid!r} is not allowed")

    def volume(self, entry: Any) -> None:
        if isinstance(entry, str):
            parts = entry.split(":")
            if len(parts) == 1:
                raise self.fail(
                    f"anonymous volume {entry!r} lives outside the role's data directory"
                )
            source, modes = parts[0], parts[2].split(",") if len(parts) > 2 else []
            target = parts[1]
            read_only = "ro" in modes
            kind = "bind" if source.startswith(("/", ".", "$")) else "volume"
        elif isinstance(entry, dict):
            kind = entry.get("type", "volume")
            source = str(entry.get("source", ""))
            target = str(entry.get("target", ""))
            read_only = entry.get("read_only") is True
            if kind == "tmpfs":
                self.tmpfs.add(posixpath.normpath(target))
                return
        else:
            raise self.fail(f"volume entry {entry!r} is neither a string nor a mapping")
        if kind != "bind":
            raise self.fail(
                f"volume {source or entry!r} lives outside the role's data directory",
                hint=f"bind a directory under ${{{STATE_VAR}}} declared in role.yaml state",
            )
        self.bind_source(source, read_only)
        if source.startswith("/"):
            self.host_binds.append((source, target))

    def host_reach(self) -> None:
        """No host mount reaches a ``HOST_DENIED`` path unless a tmpfs hides it."""
        for source, target in self.host_binds:
            for path in _host_forms(source):
                if path.endswith(".sock") or _is_socket(path):
                    raise self.fail(f"host mount {source!r} is a socket; no role may mount one")
                for denied in HOST_DENIED:
                    if path == denied or path.startswith(denied + "/"):
                        raise self.fail(
                            f"host mount {source!r} reaches {denied}, which no role may mount",
                            hint="it holds the container engine's sockets or the updater's "
                            "state; :ro does not restrict a socket",
                        )
                for denied in MUST_HIDE:
                    # Only what exists as a directory here: a tmpfs target missing under a
                    # read-only bind cannot be created, and a link (/var/run) is hidden as
                    # its target.
                    present = Path(denied).is_dir() and not Path(denied).is_symlink()
                    if present and denied.startswith(path.rstrip("/") + "/"):
                        hidden = posixpath.join(target, posixpath.relpath(denied, path))
                        if posixpath.normpath(hidden) not in self.tmpfs:
                            raise self.fail(
                                f"host mount {source!r} contains {denied}",
                                hint=f"hide it with a tmpfs volume at {hidden}",
                            )

    def bind_source(self, source: str, read_only: bool) -> None:
        state = _STATE_PREFIX.fullmatch(source)
        if state:
            rest = state.group("rest") or ""
            parts = [p for p in rest.split("/") if p]
            if ".." in parts or _VARIABLE.search(rest):
                raise self.fail(f"volume source {source!r} escapes the role's state directory")
            if not parts or parts[0] not in self.spec.state:
                raise self.fail(
                    f"volume source {source!r} is not a state directory declared in role.yaml",
                    hint=f"bind ${{{STATE_VAR}}}/<name> with <name> listed under state",
                )
            return
        if _VARIABLE.search(source):
            raise self.fail(
                f"volume source {source!r} uses a variable",
                hint=f"only ${{{STATE_VAR}}} may be interpolated in volume sources",
            )
        if source.startswith("/"):
            if self.spec.privilege(self.name, PrivilegeKind.HOST_MOUNT, source) is None:
                raise self.fail(
                    f"volume {source!r} is outside the role's data directory",
                    hint="state belongs under ${ROLE_STATE}; a read-only host mount needs a "
                    "justified host-mount privilege",
                )
            if not read_only:
                raise self.fail(f"host mount {source!r} must be read-only (:ro)")
            return
        inside_path(self.bundle_dir, source, what=f"service '{self.name}' volume")
        if not read_only:
            raise self.fail(
                f"bundle path {source!r} must be mounted read-only (:ro)",
                hint=f"writable data belongs under ${{{STATE_VAR}}}",
            )

    def port(self, entry: Any) -> None:
        if isinstance(entry, int):
            raise self.fail(f"port {entry} has no explicit host port")
        if isinstance(entry, dict):
            published, proto = entry.get("published"), entry.get("protocol", "tcp")
            if published is None:
                raise self.fail(f"port {entry!r} has no explicit host port")
            host = str(published)
        else:
            match = _PORT.fullmatch(str(entry))
            if not match:
                raise self.fail(
                    f"port {entry!r} is not HOST:CONTAINER[/proto] with single port numbers"
                )
            host, proto = match.group("host"), match.group("proto") or "tcp"
        if not host.isdigit() or proto not in ("tcp", "udp"):
            raise self.fail(f"port {entry!r} is not a single host port")
        if not any(p.port == int(host) and p.protocol is Protocol(proto) for p in self.spec.ports):
            raise self.fail(f"port {host}/{proto} is not declared in role.yaml ports")

    def device(self, entry: Any) -> None:
        if isinstance(entry, dict):
            host = str(entry.get("source", ""))
        elif isinstance(entry, str):
            host = entry.split(":")[0]
        else:
            raise self.fail(f"device entry {entry!r} is not a string")
        if host not in {d.path for d in self.spec.devices}:
            raise self.fail(f"device {host} is not declared in role.yaml devices")

    def env_file(self, entry: Any) -> None:
        path = entry.get("path") if isinstance(entry, dict) else entry
        if not isinstance(path, str):
            raise self.fail(f"env_file entry {entry!r} is not a path")
        if path in (ENV_FILE, f"./{ENV_FILE}"):
            return
        inside_path(self.bundle_dir, path, what=f"service '{self.name}' env_file")


def _host_forms(source: str) -> set[str]:
    """``source`` as written and as this device resolves it now (a link swapped in later is
    caught again when the manager re-validates the bundle before each start)."""
    normal = posixpath.normpath(source)
    return {normal, os.path.realpath(normal)}


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(Path(path).stat().st_mode)
    except OSError:
        return False


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def inside_path(root: Path, relative: str, *, what: str) -> Path:
    """Resolve ``relative`` against ``root``; it must be relative and stay inside."""
    if not relative or relative.startswith("/") or "\0" in relative:
        raise BundleError(f"{what}: {relative!r} must be a relative path inside the bundle")
    normal = posixpath.normpath(relative)
    if normal == ".." or normal.startswith("../"):
        raise BundleError(f"{what}: {relative!r} escapes the bundle")
    target = (root / normal).resolve()
    if not target.is_relative_to(root.resolve()):
        raise BundleError(f"{what}: {relative!r} escapes the bundle through a link")
    return target


def state_binds(doc: dict[str, Any]) -> Iterator[tuple[str, str, list[str]]]:
    """Each bind under ``${ROLE_STATE}`` in a checked compose ``doc``: the service, the source
    as written and its path parts below the state directory."""
    for name, service in doc.get("services", {}).items():
        for entry in _as_list(service.get("volumes")):
            source = entry.split(":")[0] if isinstance(entry, str) else str(entry.get("source", ""))
            match = _STATE_PREFIX.fullmatch(source)
            if match is not None:
                yield name, source, [p for p in (match.group("rest") or "").split("/") if p]
