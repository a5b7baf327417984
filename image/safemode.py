"""The safe-mode stack as the OS image ships it: ``safe-mode/`` with its image inside.

The role manager starts the stack from ``/opt/metrica-fleet/safe-mode`` when a role cannot run
(``updater.cli.SAFE_MODE_BUNDLE``), exactly when the network may be the problem: its image
must already be on the device. Its recipe (``safe-mode/image.yaml``: Debian's busybox-static)
is built here for arm64, the source bundle's registry reference is replaced by the built
image's local ID (``sha256:<hex>``), and the archive goes into the bundle's ``images/``, the
same way a signed role bundle carries its images (ADR 0043). The role manager loads it with
``docker load`` when it first stages the stack; no registry is involved. ADR 0059.

Both backends call :func:`prepare` on the build host and hand the folder to stage-fleet's
``03-updater/02-run.sh`` as ``FLEET_SAFE_MODE``, which copies it into the rootfs.
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath

from fleetcore.errors import FleetError
from fleetcore.rolebundle.bundle import load_bundle
from fleetcore.rolebundle.images import IMAGES_DIR, archive_name
from fleetcore.rolebundle.spec import ROLE_FILE
from image.backends.base import SOURCE_ROOT
from image.errors import BuildError
from image.progress import step
from image.roleimage import build, recipe
from image.roleimage.apt import DEFAULT_CACHE

SOURCE = SOURCE_ROOT / "safe-mode"
RECIPE = SOURCE / "image.yaml"
# Where the updater looks for it (updater.cli.SAFE_MODE_BUNDLE), relative to the rootfs.
INSTALL_PATH = PurePosixPath("opt/metrica-fleet/safe-mode")
# The recipe builds the image; it is no part of the bundle.
_NOT_SHIPPED = ("image.yaml",)


def prepare(out: Path, *, cache: Path = DEFAULT_CACHE) -> Path:
    """Build the stack's arm64 image and write the bundle the image ships to ``out/safe-mode``.

    Every image the source bundle names is replaced by the one local image, so the shipped
    bundle can only start what it carries; the result is checked with the role manager's own
    bundle validation (``fleetcore.rolebundle``, archive included) before any backend copies it.
    """
    source = load_bundle(SOURCE).spec
    with step("safe-mode stack: build its image (busybox-static, arm64)"):
        built = build.build(recipe.load(RECIPE), recipe.Arch.ARM64, out / "image", cache=cache)
    bundle = out / "safe-mode"
    shutil.rmtree(bundle, ignore_errors=True)
    shutil.copytree(SOURCE, bundle, ignore=shutil.ignore_patterns(*_NOT_SHIPPED))
    for name in (ROLE_FILE, source.compose):
        path = bundle / name
        text = path.read_text(encoding="utf-8")
        for reference in source.images:
            text = text.replace(reference, built.image_id)
        path.write_text(text, encoding="utf-8")
    images = bundle / IMAGES_DIR
    images.mkdir()
    shutil.copyfile(built.archive, images / archive_name(built.image_id.removeprefix("sha256:")))
    try:
        shipped = load_bundle(bundle).spec
    except FleetError as err:
        raise BuildError(f"the safe-mode bundle with its image is not valid: {err}") from err
    if list(shipped.images) != [built.image_id]:
        raise BuildError(
            f"the safe-mode bundle names {list(shipped.images)}, not only {built.image_id}",
            hint="safe-mode/role.yaml and compose.yaml must use one image reference",
        )
    return bundle
