"""The pi-gen backend: Raspberry Pi OS Lite built by a pi-gen checkout with stage-fleet.

pi-gen runs its stages (in Docker via build-docker.sh, or natively via build.sh); stage-fleet's
export step leaves ``<IMG_NAME>-rootfs.tar`` in pi-gen's deploy folder, which this backend
unpacks as the rootfs for ``fleet-image assemble``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from fleetcore.errors import CommandError
from fleetcore.run import run
from image.backends import wheelhouse, workdir
from image.backends.base import ROOTFS, SOURCE_ROOT, UPDATER_UNIT, Backend
from image.errors import BuildError, InputError
from image.progress import step

CONFIG = SOURCE_ROOT / "pi-gen-config" / "config"
EXPORT_NAME = "metrica-fleet-rootfs.tar"


class PiGenBackend(Backend):
    def _build(self, out: Path) -> Path:
        checkout = self.config.pi_gen_dir
        if checkout is None or not (checkout / "build.sh").is_file():
            raise InputError(
                "the pi-gen backend needs pi_gen_dir: a pi-gen checkout (arm64 branch)",
                hint="git clone --branch arm64 https://github.com/RPi-Distro/pi-gen",
            )
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="fleet-wheels-", dir=out) as wheels:
            with step("download aarch64 wheels of the updater"):
                wheelhouse.build(Path(wheels))
            env = {
                "FLEET_DIR": str(SOURCE_ROOT / "pi-gen-config"),
                "FLEET_WHEELHOUSE": wheels,
                "FLEET_ROOT_JSON": str(self.config.root_json),
                "FLEET_UPDATER_UNIT": str(UPDATER_UNIT),
                "TARGET_HOSTNAME": self.config.hostname,
            }
            with step("pi-gen (stage0 .. stage-fleet)"):
                try:
                    run(["./build.sh", "-c", CONFIG], cwd=checkout, env=env, capture=False)
                except CommandError as err:
                    raise BuildError(f"pi-gen failed: {err}") from err
        return self._unpack(checkout / "deploy" / EXPORT_NAME, out)

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
