"""The qemu tier's role: its arm64 image built from Debian packages, its bundles packed with
that image inside, ready for `fleet-sign add --kind role`.

The bundle (`fixtures/role/e2e-web/`) is a template: the image ID follows Debian's
busybox-static, so the image is built at test time with `fleet-image role-image build` and its
ID and the version are filled in here. A version packed ``healthy=False`` leaves out the file
the healthcheck fetches: its container never becomes healthy.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from fleetcore.release import role_target
from fleetcore.run import run, run_text
from product import tool

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "role"
RECIPE = FIXTURE / "web-image.yaml"
BUNDLE = FIXTURE / "e2e-web"
NAME = "e2e-web"
HEALTH_FILE = "config/healthy"
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
    version: str
    archive: Path

    @property
    def target(self) -> str:
        return role_target(NAME, self.version)


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
    """The bundle of ``version`` with ``image`` inside, as `roles pack` writes it."""
    folder = workdir / f"role-{version}"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(BUNDLE, folder)
    for name in TEMPLATED:
        path = folder / name
        text = path.read_text().replace("@VERSION@", version).replace("@IMAGE_ID@", image.hex)
        path.write_text(text)
    if not healthy:
        (folder / HEALTH_FILE).unlink()
    archive = workdir / f"{NAME}-{version}.tar.zst"
    run([tool("fleet-updater"), "roles", "pack", folder, archive, "--images", image.folder])
    shutil.rmtree(folder)
    return RoleBundle(version, archive)
