"""The qemu tier's role: its arm64 image built from Debian packages, its bundles packed with
that image inside, ready for `fleet-sign add --kind role`.

The bundle (`fixtures/role/e2e-web/`) is a template: the image ID follows Debian's
busybox-static, so the image is built at test time with `fleet-image role-image build` and its
ID and the version are filled in here. A version packed ``healthy=False`` leaves out the file
the healthcheck fetches: its container never becomes healthy.

The safe-mode scenario's role (`fixtures/role/e2e-crash/`) runs the same image with a start
script written here: one that exits at once (``crashes=True``: every start of the container
fails, a crash loop) or one that starts httpd like e2e-web.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fleetcore.release import role_target
from fleetcore.run import run, run_text
from product import tool

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "role"
RECIPE = FIXTURE / "web-image.yaml"
BUNDLE = FIXTURE / "e2e-web"
NAME = "e2e-web"
CRASH_BUNDLE = FIXTURE / "e2e-crash"
CRASH_NAME = "e2e-crash"
HEALTH_FILE = "config/healthy"
START_SCRIPT = "config/run"
CRASHING_START = """\
#!/bin/sh
echo "e2e-crash: exiting at start on purpose" >&2
exit 3
"""
HTTPD_START = """\
#!/bin/sh
exec /usr/bin/busybox httpd -f -p 8080 -h /www
"""
TEMPLATED = ("role.yaml", "compose.yaml")


@dataclass(frozen=True)
class RoleImage:
    image_id: str
    """``sha256:<hex>``"""
    folder: Path
    """holds ``<hex>.tar``, for ``roles pack --images``"""

    @property
    def hex(self) -> str:
        return self.image_id.removeprefix("sha256:")

    @property
    def archive(self) -> Path:
        return self.folder / f"{self.hex}.tar"


@dataclass(frozen=True)
class RoleBundle:
    name: str
    version: str
    archive: Path

    @property
    def target(self) -> str:
        return role_target(self.name, self.version)


def build_image(workdir: Path) -> RoleImage:
    """The role's arm64 image archive (a few seconds with the apt cache warm)."""
    out = workdir / "role-images"
    if out.exists():
        shutil.rmtree(out)
    printed = run_text(
        [tool("fleet-image"), "role-image", "build", RECIPE, "--arch", "arm64", "--out", out],
        timeout=900,
    )
    return RoleImage(printed.strip().splitlines()[-1], out)


def pack(image: RoleImage, workdir: Path, version: str, *, healthy: bool = True) -> RoleBundle:
    """The e2e-web bundle of ``version`` with ``image`` inside, as `roles pack` writes it."""

    def change(folder: Path) -> None:
        if not healthy:
            (folder / HEALTH_FILE).unlink()

    return _pack(image, workdir, BUNDLE, NAME, version, change)


def pack_crash(image: RoleImage, workdir: Path, version: str, *, crashes: bool) -> RoleBundle:
    """The e2e-crash bundle of ``version``: a crash loop, or httpd serving like e2e-web."""

    def change(folder: Path) -> None:
        (folder / START_SCRIPT).write_text(CRASHING_START if crashes else HTTPD_START)

    return _pack(image, workdir, CRASH_BUNDLE, CRASH_NAME, version, change)


def _pack(
    image: RoleImage,
    workdir: Path,
    template: Path,
    name: str,
    version: str,
    change: Callable[[Path], None],
) -> RoleBundle:
    folder = workdir / f"{name}-{version}"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(template, folder)
    for templated in TEMPLATED:
        path = folder / templated
        text = path.read_text().replace("@VERSION@", version).replace("@IMAGE_ID@", image.hex)
        path.write_text(text)
    change(folder)
    archive = workdir / f"{name}-{version}.tar.zst"
    run([tool("fleet-updater"), "roles", "pack", folder, archive, "--images", image.folder])
    shutil.rmtree(folder)
    return RoleBundle(name, version, archive)
