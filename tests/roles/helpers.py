"""Building test bundles from the checked-in fixtures."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

from fleetcore.cli import run_main
from updater.roles.cli import register

FIXTURES = Path(__file__).parent / "fixtures"
GOOD = FIXTURES / "good" / "webapp"
BAD = FIXTURES / "bad"
PLACEHOLDER_IMAGE = "sha256:" + "1" * 64
REPO = Path(__file__).resolve().parents[2]


def make_bundle(
    dest: Path, *, image: str = PLACEHOLDER_IMAGE, version: str = "1.0.0", healthy: bool = True
) -> Path:
    """A copy of the webapp fixture at ``version``; ``healthy=False`` probes the wrong port."""
    shutil.copytree(GOOD, dest, symlinks=True)
    role = (dest / "role.yaml").read_text()
    (dest / "role.yaml").write_text(
        role.replace(PLACEHOLDER_IMAGE, image).replace("version: 1.0.0", f"version: {version}")
    )
    compose = (dest / "compose.yaml").read_text().replace(PLACEHOLDER_IMAGE, image)
    if not healthy:
        compose = compose.replace("127.0.0.1:8080/", "127.0.0.1:8081/")
    (dest / "compose.yaml").write_text(compose)
    return dest


def _tar(members: list[tuple[str, bytes | str]]) -> bytes:
    """A plain tar: ``bytes`` are regular files, a ``str`` is a symlink target."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return raw.getvalue()


def image_archive(folder: Path, *, oci: bool = False, diff_ok: bool = True, tag: str = "") -> str:
    """Write a hand-made ``docker save`` archive into ``folder``; return its image ID hex.

    The legacy layout (what Debian's docker 20.10 writes) names the one layer twice, the second
    time through a symlink as ``docker save`` does for a repeated layer; ``oci`` is the layout
    of Docker 25+ (``blobs/sha256/<hex>``). ``diff_ok=False`` gives the config a wrong
    ``rootfs.diff_ids``: the archive passes validation but ``docker load`` refuses it.
    """
    layer = _tar([("hello", b"hi\n")])
    diff = hashlib.sha256(layer).hexdigest() if diff_ok else "f" * 64
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff}"] * 2},
        }
    ).encode()
    image_hex = hashlib.sha256(config).hexdigest()
    if oci:
        config_name, layer_name = f"blobs/sha256/{image_hex}", f"blobs/sha256/{diff}"
        layers: list[tuple[str, bytes | str]] = [(layer_name, layer)]
        names = [layer_name, layer_name]
    else:
        config_name, names = f"{image_hex}.json", ["a/layer.tar", "b/layer.tar"]
        layers = [("a/layer.tar", layer), ("b/layer.tar", "../a/layer.tar")]
    manifest = [{"Config": config_name, "RepoTags": [tag] if tag else None, "Layers": names}]
    members: list[tuple[str, bytes | str]] = [
        ("manifest.json", json.dumps(manifest).encode()),
        (config_name, config),
        *layers,
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{image_hex}.tar").write_bytes(_tar(members))
    return image_hex


def run_cli(*argv: str) -> int:
    """``fleet-updater roles ARGV`` as the updater's main runs it (one error line, no trace)."""
    parser = argparse.ArgumentParser(prog="fleet-updater")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["roles", *argv])
    return run_main("fleet-updater", lambda: args.handler(args))
