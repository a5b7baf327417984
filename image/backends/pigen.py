"""The pi-gen backend: Raspberry Pi OS Lite built by a pi-gen checkout with stage-fleet.

pi-gen's ``build.sh`` (bookworm-arm64 branch) runs stage0..stage2 and stage-fleet natively;
stage-fleet's export step leaves ``<IMG_NAME>-rootfs.tar`` in ``DEPLOY_DIR``, which this backend
points into its output folder and unpacks as the rootfs for ``fleet-image assemble``.
``build-docker.sh`` is not used: its container sees neither this checkout nor the wheelhouse.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from fleetcore.errors import CommandError
from fleetcore.run import run
from image import safemode
from image.backends import mounts, wheelhouse, workdir
from image.backends.base import ROOTFS, SOURCE_ROOT, UPDATER_UNIT, Backend, stage_settings
from image.errors import BuildError, InputError
from image.progress import step

CONFIG = SOURCE_ROOT / "pi-gen-config" / "config"
# <IMG_NAME>-rootfs.tar, IMG_NAME as pi-gen-config/config sets it.
EXPORT_NAME = "metrica-fleet-rootfs.tar"
DEPLOY = ".pi-gen-deploy"
BRANCH = "bookworm-arm64"
# stage2 carries EXPORT_IMAGE; this file stops pi-gen exporting a plain Lite image.
SKIP_IMAGES = Path("stage2/SKIP_IMAGES")
# pi-gen's default WORK_DIR root; its stages leave chroot mounts there when killed.
WORK = "work"


class PiGenBackend(Backend):
    def _build(self, out: Path) -> Path:
        checkout = self.config.pi_gen_dir
        if checkout is None or not (checkout / "build.sh").is_file():
            raise InputError(
                f"the pi-gen backend needs pi_gen_dir: a pi-gen checkout ({BRANCH} branch)",
                hint=f"git clone --branch {BRANCH} https://github.com/RPi-Distro/pi-gen",
            )
        checkout = checkout.resolve()
        out.mkdir(parents=True, exist_ok=True)
        deploy = out / DEPLOY
        mounts.remove_tree(deploy)
        (checkout / SKIP_IMAGES).touch()
        with (
            tempfile.TemporaryDirectory(prefix="fleet-wheels-", dir=out) as wheels,
            tempfile.TemporaryDirectory(prefix="fleet-safe-mode-", dir=out) as safe_mode,
        ):
            with step("download aarch64 wheels of the updater"):
                wheelhouse.build(Path(wheels))
            env = {
                "FLEET_DIR": str(SOURCE_ROOT / "pi-gen-config"),
                "FLEET_WHEELHOUSE": wheels,
                "FLEET_SAFE_MODE": str(safemode.prepare(Path(safe_mode))),
                "FLEET_ROOT_JSON": str(self.config.root_json),
                "FLEET_UPDATER_UNIT": str(UPDATER_UNIT),
                **stage_settings(self.config),
                "DEPLOY_DIR": str(deploy),
            }
            with step("pi-gen (stage0 .. stage-fleet)"):
                try:
                    run(["./build.sh", "-c", CONFIG], cwd=checkout, env=env, capture=False)
                except CommandError as err:
                    raise BuildError(f"pi-gen failed: {err}") from err
                finally:
                    # build.sh unmounts on exit, but not when it is killed.
                    mounts.unmount_under(checkout / WORK)
        try:
            return self._unpack(deploy / EXPORT_NAME, out)
        finally:
            mounts.remove_tree(deploy)

    def _unpack(self, tar: Path, out: Path) -> Path:
        if not tar.is_file():
            raise BuildError(f"pi-gen left no {tar}: did stage-fleet's export step run?")
        target = out / ROOTFS
        with workdir.partial_output(target) as partial, step(f"unpack {tar.name}"):
            partial.mkdir()
            run(
                [
                    "tar", "-xpf", tar, "--xattrs", "--xattrs-include=*", "--numeric-owner",
                    "-C", partial,
                ]
            )  # fmt: skip
        return target
