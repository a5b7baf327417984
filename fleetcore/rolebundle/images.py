"""Image archives a bundle carries: ``images/<hex>.tar`` in ``docker save`` format.

A bundle may ship the images it pins by local ID (``sha256:<hex>`` in ``role.yaml``), so the
role runs on a device without registry access. Each archive is what ``docker load -i`` reads:
``manifest.json`` (a one-element list with ``Config``, ``RepoTags`` and ``Layers``), the config
blob and the layer tars. The image ID is the sha256 of the config blob, so the file name, the
ID in ``role.yaml`` and the blob must agree; ``docker load`` itself checks every layer against
the config's ``rootfs.diff_ids``.

The checks read only tar headers, ``manifest.json`` and the config blob, never the layers, so
validating a 300 MB archive costs a few header reads and one small hash.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import stat
from pathlib import Path
from typing import IO, Any

from fleetcore import strictjson
from fleetcore.errors import FleetError
from fleetcore.rolebundle.errors import ArchiveError, ImageArchiveError
from fleetcore.rolebundle.spec import RoleSpec
from fleetcore.rolebundle.tarstream import Member, TarReader

IMAGES_DIR = "images"
ARCHIVE_SUFFIX = ".tar"
_ARCHIVE_NAME = re.compile(r"^([0-9a-f]{64})\.tar$")
_LOCAL_ID = re.compile(r"^sha256:([0-9a-f]{64})$")
MANIFEST = "manifest.json"
# docker save writes a handful of members per layer; the JSON documents are a few kilobytes.
MAX_ARCHIVE_MEMBERS = 20_000
MAX_JSON_BYTES = 4 * 1024 * 1024
_MAX_LINK_HOPS = 8


def local_ids(spec: RoleSpec) -> dict[str, str]:
    """The ``sha256:<hex>`` images of ``spec``, by hex."""
    return {m[1]: image for image in spec.images if (m := _LOCAL_ID.fullmatch(image))}


def archive_name(image_hex: str) -> str:
    return f"{image_hex}{ARCHIVE_SUFFIX}"


def archive_path(bundle_dir: Path, image: str) -> Path | None:
    """The archive ``bundle_dir`` carries for ``image`` (a ``sha256:<hex>`` ID), if any."""
    match = _LOCAL_ID.fullmatch(image)
    if match is None:
        return None
    path = bundle_dir / IMAGES_DIR / archive_name(match[1])
    return path if path.is_file() and not path.is_symlink() else None


def carried_ids(bundle_dir: Path) -> set[str]:
    """The image IDs whose archives ``bundle_dir/images`` holds (by file name)."""
    folder = bundle_dir / IMAGES_DIR
    if folder.is_symlink() or not folder.is_dir():
        return set()
    return {
        f"sha256:{m[1]}" for path in folder.iterdir() if (m := _ARCHIVE_NAME.fullmatch(path.name))
    }


def check_images_dir(bundle_dir: Path, spec: RoleSpec) -> None:
    """Every entry of ``bundle_dir/images`` is a valid archive of an ID ``spec`` lists."""
    folder = bundle_dir / IMAGES_DIR
    try:
        mode = folder.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(mode):
        raise ImageArchiveError(f"{IMAGES_DIR} must be a directory of image archives")
    listed = local_ids(spec)
    for entry in sorted(folder.iterdir()):
        label = f"{IMAGES_DIR}/{entry.name}"
        if not stat.S_ISREG(entry.lstat().st_mode):
            raise ImageArchiveError(
                f"{label} is a link, directory or special file; {IMAGES_DIR}/ holds only "
                "image archives"
            )
        match = _ARCHIVE_NAME.fullmatch(entry.name)
        if match is None:
            raise ImageArchiveError(
                f"{label} is not named <image ID>.tar (64 lowercase hex digits)"
            )
        if match[1] not in listed:
            raise ImageArchiveError(
                f"{label}: sha256:{match[1]} is not an image ID listed in role.yaml images"
            )
        check_archive(entry, match[1], label=label)


def check_archive(path: Path, image_hex: str, *, label: str) -> None:
    """``path`` is a ``docker save`` archive of exactly the image ``sha256:<image_hex>``.

    Headers go through ``tarstream`` (extended headers capped before they are read), so a
    hostile archive costs at most the member index and two capped reads.
    """
    try:
        with path.open("rb") as handle:
            members = _members(TarReader(handle), label)
            config, layers = _single_image(_read_json(handle, members, MANIFEST, label), label)
            blob = _read(handle, members, config, label, what="its Config blob")
            digest = hashlib.sha256(blob).hexdigest()
            if digest != image_hex:
                raise ImageArchiveError(
                    f"{label}: its Config blob has sha256 {digest}, not the file name's ID",
                    hint="the archive holds another image than role.yaml pins",
                )
            for layer in layers:
                _resolve(members, layer, label, what=f"layer {layer}")
    except ArchiveError as err:
        raise ImageArchiveError(f"{label} is not a readable tar archive ({err})") from err
    except OSError as err:
        raise ImageArchiveError(f"cannot read {label}: {err}") from err


def _members(tar: TarReader, label: str) -> dict[str, Member]:
    members: dict[str, Member] = {}
    for count, member in enumerate(tar, start=1):
        if count > MAX_ARCHIVE_MEMBERS:
            raise ImageArchiveError(f"{label} has more than {MAX_ARCHIVE_MEMBERS} members")
        members[posixpath.normpath(member.name)] = member
    return members


def _single_image(manifest: Any, label: str) -> tuple[str, list[str]]:
    where = f"{label}: {MANIFEST}"
    if not isinstance(manifest, list) or not manifest:
        raise ImageArchiveError(f"{where} must be a non-empty list of images")
    if len(manifest) > 1:
        raise ImageArchiveError(
            f"{where} holds {len(manifest)} images; an archive carries exactly one"
        )
    entry = manifest[0]
    if not isinstance(entry, dict):
        raise ImageArchiveError(f"{where}: the image entry must be a mapping")
    config, tags, layers = entry.get("Config"), entry.get("RepoTags"), entry.get("Layers")
    if not isinstance(config, str) or not config:
        raise ImageArchiveError(f"{where}: Config must name the config blob")
    if tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
        raise ImageArchiveError(f"{where}: RepoTags must be a list of tags or null")
    if not (isinstance(layers, list) and layers and all(isinstance(x, str) for x in layers)):
        raise ImageArchiveError(f"{where}: Layers must be a non-empty list of layer paths")
    return config, layers


def _resolve(members: dict[str, Member], name: str, label: str, *, what: str) -> Member:
    """The regular-file member ``name`` refers to (``docker save`` links repeated layers)."""
    key = posixpath.normpath(name)
    for _hop in range(_MAX_LINK_HOPS):
        member = members.get(key)
        if member is None or key.startswith(("/", "../")) or key == "..":
            break
        if member.isreg():
            return member
        if not member.issym():
            break
        key = posixpath.normpath(posixpath.join(posixpath.dirname(key), member.linkname))
    raise ImageArchiveError(f"{label}: {MANIFEST} names {what}, which the archive lacks")


def _read(
    handle: IO[bytes], members: dict[str, Member], name: str, label: str, *, what: str
) -> bytes:
    member = _resolve(members, name, label, what=what)
    if member.size > MAX_JSON_BYTES:
        raise ImageArchiveError(f"{label}: {what} is larger than {MAX_JSON_BYTES} bytes")
    handle.seek(member.offset)
    data = handle.read(member.size)
    if len(data) != member.size:
        raise ImageArchiveError(f"{label}: {what} is truncated")
    return data


def _read_json(handle: IO[bytes], members: dict[str, Member], name: str, label: str) -> Any:
    if name not in members:
        raise ImageArchiveError(f"{label} has no {name}; it is not a docker save archive")
    data = _read(handle, members, name, label, what=name)
    try:
        return strictjson.loads(data, what=f"{label}: {name}", max_bytes=MAX_JSON_BYTES)
    except FleetError as err:
        raise ImageArchiveError(f"{label}: {name} is not valid JSON ({err})") from err
