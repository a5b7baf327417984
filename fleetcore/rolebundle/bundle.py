"""A role bundle on disk: the file-tree rules, ``role.yaml`` and the compose policy together."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetcore.rolebundle import envfile
from fleetcore.rolebundle.errors import BundleError
from fleetcore.rolebundle.images import check_images_dir
from fleetcore.rolebundle.policy import check_compose, inside_path
from fleetcore.rolebundle.spec import (
    APPLYING_FILE,
    CONFIG_DIR,
    ENV_FILE,
    ENV_TEMPLATE,
    OVERRIDE_FILE,
    ROLE_FILE,
    RoleSpec,
    load_spec,
    load_yaml,
)

MAX_BUNDLE_FILES = 2000
RUNTIME_FILES = (ENV_FILE, OVERRIDE_FILE, APPLYING_FILE)


@dataclass(frozen=True)
class Bundle:
    path: Path
    spec: RoleSpec
    compose: dict[str, Any]

    @property
    def compose_file(self) -> Path:
        return self.path / self.spec.compose

    @property
    def services(self) -> list[str]:
        return sorted(self.compose["services"])


def check_tree(root: Path) -> None:
    """Only regular files, directories and links that stay inside ``root``."""
    resolved_root = root.resolve()
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in [*dirnames, *filenames]:
            count += 1
            if count > MAX_BUNDLE_FILES:
                raise BundleError(f"bundle has more than {MAX_BUNDLE_FILES} files")
            path = Path(dirpath, entry)
            relative = path.relative_to(root)
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                target = str(path.readlink())
                if target.startswith("/"):
                    raise BundleError(f"link {relative} -> {target} is an absolute path")
                if not path.resolve().is_relative_to(resolved_root):
                    raise BundleError(f"link {relative} -> {target} escapes the bundle")
            elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise BundleError(f"{relative} is a device node, fifo or socket")


def load_bundle(path: Path, *, staged: bool = False) -> Bundle:
    """Validate the bundle folder at ``path`` and return it; the first problem raises.

    ``staged`` accepts the files the manager writes into a staged version (``.env``, the
    override file, the marker of a start under way); a bundle as shipped must not contain
    them.
    """
    if not path.is_dir():
        raise BundleError(f"{path} is not a directory")
    check_tree(path)
    if not staged:
        for reserved in RUNTIME_FILES:
            if (path / reserved).exists() or (path / reserved).is_symlink():
                raise BundleError(f"{reserved} is written on the device; remove it from the bundle")
    role_file = path / ROLE_FILE
    if not role_file.is_file() or role_file.is_symlink():
        raise BundleError(f"{ROLE_FILE} is missing")
    spec = load_spec(role_file.read_text(encoding="utf-8"))
    for required, is_kind in ((CONFIG_DIR, Path.is_dir), (ENV_TEMPLATE, Path.is_file)):
        if not is_kind(path / required):
            raise BundleError(f"{required} is missing")
    envfile.check_template((path / ENV_TEMPLATE).read_text(encoding="utf-8"))
    compose_path = inside_path(path, spec.compose, what="role.yaml compose")
    if not compose_path.is_file():
        raise BundleError(f"compose file {spec.compose} is missing")
    doc = load_yaml(compose_path.read_text(encoding="utf-8"), source=spec.compose)
    check_compose(doc, spec, path)
    check_images_dir(path, spec)
    return Bundle(path=path, spec=spec, compose=doc)
