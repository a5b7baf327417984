"""Facts about block devices from ``lsblk -J`` and ``findmnt``: is it safe to overwrite?"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from fleetcore.errors import CommandError
from fleetcore.run import run_text
from image.errors import FlashError, UnsafeTargetError


def _lsblk(device: Path) -> dict[str, Any]:
    try:
        out = run_text(
            ["lsblk", "-J", "-b", "-o", "NAME,PATH,TYPE,SIZE,MOUNTPOINTS,PKNAME", device]
        )
    except CommandError as err:
        raise FlashError(f"cannot inspect {device}: {err}") from err
    devices: list[dict[str, Any]] = json.loads(out)["blockdevices"]
    return devices[0]


def _walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    out = [node]
    for child in node.get("children", []):
        out += _walk(child)
    return out


def root_disks() -> set[str]:
    """Paths of the whole disks under the running system's root filesystem."""
    source = run_text(["findmnt", "-n", "-e", "-o", "SOURCE", "/"]).strip()
    if not source.startswith("/dev/"):
        return set()
    # Resolve partitions, device-mapper and md stacks down to their disks.
    out = run_text(["lsblk", "-J", "-s", "-o", "PATH,TYPE", source])
    disks: set[str] = set()
    for top in json.loads(out)["blockdevices"]:
        for node in _walk(top):
            if node["type"] in {"disk", "loop"}:
                disks.add(os.path.realpath(node["path"]))
    return disks


def check_target(device: Path) -> int:
    """Refuse a device that is not a whole disk, is mounted, or holds /; return its size."""
    try:
        mode = device.stat().st_mode
    except OSError as err:
        raise FlashError(f"cannot open {device}: {err.strerror}") from err
    if not stat.S_ISBLK(mode):
        raise FlashError(f"{device} is not a block device", hint="use --out FILE for an image file")
    info = _lsblk(device)
    if info["type"] not in {"disk", "loop"}:
        raise UnsafeTargetError(
            f"{device} is a {info['type']}, not a whole disk", hint="name the disk, e.g. /dev/sdX"
        )
    real = os.path.realpath(device)
    if real in root_disks():
        raise UnsafeTargetError(f"{device} holds the running system's root filesystem")
    mounted = [
        f"{node['path']} on {point}"
        for node in _walk(info)
        for point in node.get("mountpoints") or []
        if point
    ]
    if mounted:
        raise UnsafeTargetError(
            f"{device} is mounted ({', '.join(mounted)})", hint="unmount it first"
        )
    return int(info["size"])
