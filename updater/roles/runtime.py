"""What a staged role needs on this device: its rendered files, its devices and its images.

- ``.env`` from the template, the Overlord's configuration variables (``vars``) and
  ``/data/fleet/roles/<role>.yaml`` (``config``), plus the manager-owned variables, and
  ``fleet.override.yaml`` carrying ``role.yaml``'s limits and labels;
- the host devices ``role.yaml`` declares;
- state binds that reach the role's state directory without passing through a link, right
  before every ``up``;
- every image present in the engine before the swap, pulled if it is a registry reference, so
  a network failure delays an update instead of failing (and condemning) the new version, or
  loaded from the archive the bundle carries if it is pinned by ID; checked again before every
  start, so a rollback whose image was removed from the engine meanwhile loads it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from fleetcore.atomic import atomic_write
from fleetcore.errors import CommandError
from fleetcore.rolebundle import envfile, images
from fleetcore.rolebundle.bundle import Bundle
from fleetcore.rolebundle.errors import BundleError
from fleetcore.rolebundle.policy import state_binds
from fleetcore.rolebundle.spec import ENV_FILE, ENV_TEMPLATE, OVERRIDE_FILE
from fleetcore.run import run
from updater.roles.errors import DeviceMissing, EngineError, RoleError

ROLE_LABEL = "org.metrica.role"
VERSION_LABEL = "org.metrica.role.version"
PULL_TIMEOUT_S = 1800
# docker load of a few hundred MB on a Pi's SD card: minutes at worst, never an hour.
LOAD_TIMEOUT_S = 1200


def load_role_config(config_dir: Path, name: str) -> dict[str, Any]:
    """The device's values for role ``name`` (template context ``config``); empty if none."""
    path = config_dir / f"{name}.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except yaml.YAMLError as err:
        raise RoleError(f"{path} is not valid YAML") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RoleError(f"{path} must hold a mapping")
    return data


def render_env(
    directory: Path,
    bundle: Bundle,
    *,
    state_dir: Path,
    device_id: str,
    config: Mapping[str, Any],
    variables: Mapping[str, str],
) -> str:
    """The ``.env`` text of the bundle copy at ``directory`` with this configuration."""
    spec = bundle.spec
    owned = {
        "ROLE_NAME": spec.name,
        "ROLE_VERSION": str(spec.version),
        "ROLE_STATE": str(state_dir.absolute()),
        "DEVICE_ID": device_id,
    }
    context = {
        "device": {"id": device_id},
        "role": {"name": spec.name, "version": str(spec.version), "state": owned["ROLE_STATE"]},
        "config": config,
        "vars": dict(variables),
    }
    template = (directory / ENV_TEMPLATE).read_text(encoding="utf-8")
    return envfile.render(template, context=context, owned=owned)


def write_runtime_files(directory: Path, bundle: Bundle, *, env: str) -> None:
    """Write ``.env`` (mode 0600: it may hold secret values) and ``fleet.override.yaml``
    into the bundle copy at ``directory``."""
    spec = bundle.spec
    atomic_write(directory / ENV_FILE, env.encode(), mode=0o600)
    labels = {ROLE_LABEL: spec.name, VERSION_LABEL: str(spec.version)}
    override = {
        "services": {
            service: {
                "mem_limit": limits.memory,
                "cpus": limits.cpus,
                "pids_limit": limits.pids,
                "labels": labels,
            }
            for service, limits in sorted(spec.limits.items())
        }
    }
    atomic_write(directory / OVERRIDE_FILE, yaml.safe_dump(override, sort_keys=True).encode())


def env_values(text: str) -> dict[str, str]:
    """The ``KEY=VALUE`` lines of a rendered ``.env`` (comments and blank lines left out)."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            values[key] = value
    return values


def changed_names(running: str, wanted: str) -> list[str]:
    """The variables whose value differs between two ``.env`` texts, added or removed ones
    too (names only: a value may be secret)."""
    old, new = env_values(running), env_values(wanted)
    return sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))


def check_devices(bundle: Bundle) -> None:
    for device in bundle.spec.devices:
        if not Path(device.path).exists():
            raise DeviceMissing(
                f"{bundle.spec.name} needs {device.path}, which this device lacks",
                hint=device.description or None,
            )


def check_state_binds(doc: dict[str, Any], state_dir: Path) -> None:
    """No bind under ``${ROLE_STATE}`` passes through a link, checked right before ``up``.

    The containers write their state directories, so one could leave a link where a bind
    source was a directory; docker follows links in bind sources on the host, which would
    mount whatever the link names (the updater's state, a socket) read-write.
    """
    for name, source, parts in state_binds(doc):
        path = state_dir
        for part in parts:
            path = path / part
            if path.is_symlink():
                raise BundleError(
                    f"service '{name}': state bind {source!r} passes through a link "
                    f"({path.relative_to(state_dir)}); refusing to start",
                    hint="a container replaced a state directory with a link; remove it",
                )
    if state_dir.is_symlink():
        raise BundleError(f"the state directory {state_dir} is a link; refusing to start")


def ensure_images(bundle: Bundle, *, docker: str = "docker") -> None:
    """Make every image of the bundle present in the engine.

    A registry reference is pulled; an image ID (``sha256:<hex>``) is loaded from the archive
    the bundle carries (``images/<hex>.tar``), or must have been preloaded into the OS image.
    """
    for image in bundle.spec.images:
        if _present(docker, image):
            continue
        if not image.startswith("sha256:"):
            try:
                run([docker, "pull", image], timeout=PULL_TIMEOUT_S)
            except CommandError as err:
                raise EngineError(f"cannot pull {image}: {err}") from err
            continue
        archive = images.archive_path(bundle.path, image)
        if archive is None:
            raise EngineError(
                f"image {image} is not loaded on this device and the bundle carries no archive",
                hint=f"ship it as {images.IMAGES_DIR}/<hex>.tar (roles pack --images) "
                "or preload it into the OS image",
            )
        load_image(archive, image, docker=docker)


def load_image(archive: Path, image: str, *, docker: str = "docker") -> None:
    """``docker load -i archive``, then make sure the engine now has ``image`` by its ID."""
    label = f"{images.IMAGES_DIR}/{archive.name}"
    try:
        run([docker, "load", "-i", archive], timeout=LOAD_TIMEOUT_S)
    except CommandError as err:
        raise EngineError(f"cannot load {label}: {err}") from err
    if not _present(docker, image):
        raise EngineError(f"{label} loaded, but the engine has no image {image}")


def _present(docker: str, image: str) -> bool:
    try:
        return run([docker, "image", "inspect", image], check=False).returncode == 0
    except CommandError as err:
        raise EngineError(f"cannot ask the engine for {image}: {err}") from err
