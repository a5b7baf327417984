"""End to end: build the arm64 MPD image from Debian, carry it in the bundle, run the role.

The image is built fresh (Debian's archive moves, so today's ID is not assumed): the shipped
bundle is copied and pinned to whatever ID the build gives, then packed with the archive
(`roles pack --images`), and the role manager loads it into an engine that lacks it. arm64
containers run on this amd64 host through binfmt (qemu-user with the F flag). The host has no
sound hardware, so ``/dev/snd`` is stood in for by a folder of character nodes with ALSA's
major number (116) and no driver behind them: MPD opens its ALSA output only to play, so it
starts and lists it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetcore.net import free_port
from fleetcore.release import role_target
from fleetcore.rolebundle.spec import load_spec
from fleetcore.wire import DesiredRole, Health
from image.roleimage import build, recipe
from image.roleimage.build import Result
from image.roleimage.errors import PackageError
from tests.roles.conftest import Harness, busybox_image  # noqa: F401  (fixture)
from updater.roles.archive import pack
from updater.roles.compose import ComposeFlavor
from updater.roles.manager import FetchedBundle, RoleOutcome

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
ROLE = REPO / "roles" / "audio-player"
ALSA_MAJOR = 116


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, docker_engine: str) -> Iterator[Result]:
    """The recipe built for arm64 (apt cache: /var/cache/metrica-fleet/roleimage), not loaded."""
    out = tmp_path_factory.mktemp("mpd-image")
    result = build.build(recipe.load(ROLE / "image" / "mpd.yaml"), recipe.Arch.ARM64, out)
    tag = f"metrica-fleet/audio-player-mpd:{result.image_id.removeprefix('sha256:')[:12]}"
    subprocess.run([docker_engine, "rmi", tag], capture_output=True, check=False)
    yield result
    subprocess.run([docker_engine, "rmi", tag], capture_output=True, check=False)


@pytest.fixture
def sound_standin(require_root: None) -> Iterator[Path]:
    """A stand-in for /dev/snd below /dev (role.yaml only accepts device paths there)."""
    folder = Path(f"/dev/metrica-test-snd-{secrets.token_hex(3)}")
    folder.mkdir()
    try:
        for name, minor in (("controlC0", 0), ("pcmC0D0p", 16)):
            os.mknod(folder / name, stat.S_IFCHR | 0o660, os.makedev(ALSA_MAJOR, minor))
        yield folder
    finally:
        shutil.rmtree(folder)


def pinned_copy(dest: Path, image_id: str, standin: Path, port: int) -> Path:
    """The shipped bundle pinned to ``image_id``, on the stand-in device and a free port."""
    shutil.copytree(ROLE, dest)
    [shipped] = load_spec((ROLE / "role.yaml").read_text()).images
    role = (dest / "role.yaml").read_text().replace(shipped, image_id)
    role = role.replace("path: /dev/snd", f"path: {standin}")
    (dest / "role.yaml").write_text(role.replace("port: 6600", f"port: {port}"))
    compose = (dest / "compose.yaml").read_text().replace(shipped, image_id)
    compose = compose.replace('"/dev/snd:/dev/snd"', f'"{standin}:/dev/snd"')
    compose = compose.replace('"6600:6600"', f'"{port}:6600"')
    (dest / "compose.yaml").write_text(compose.replace("interval: 15s", "interval: 2s"))
    return dest


def _present(docker: str, image_id: str) -> bool:
    inspect = [docker, "image", "inspect", image_id]
    return subprocess.run(inspect, capture_output=True, check=False).returncode == 0


def mpd_command(port: int, command: str) -> str:
    """Send one MPD protocol command and return the whole conversation."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"{command}\nclose\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def test_same_debs_give_the_same_archive(built: Result, tmp_path: Path) -> None:
    again = build.build(recipe.load(ROLE / "image" / "mpd.yaml"), recipe.Arch.ARM64, tmp_path)
    assert again.image_id == built.image_id
    assert again.archive.read_bytes() == built.archive.read_bytes()
    assert {ref.name for ref in built.packages} >= {"mpd", "busybox-static", "libasound2-data"}
    assert not {ref.name for ref in built.packages} & set(built.excluded)


def test_audio_player_role_runs_on_the_built_image(
    built: Result,
    busybox_image: str,  # noqa: F811
    docker_engine: str,
    sound_standin: Path,
    tmp_path: Path,
) -> None:
    port = free_port()
    bundle = pinned_copy(tmp_path / "audio-player", built.image_id, sound_standin, port)
    spec = load_spec((bundle / "role.yaml").read_text())
    archive = tmp_path / "audio-player.tar.zst"
    assert pack(bundle, archive, images_dir=built.archive.parent, level=3) == [
        f"images/{built.archive.name}"
    ]
    assert not _present(docker_engine, built.image_id)
    harness = Harness(tmp_path, busybox_image, docker_engine, ComposeFlavor.V2)
    try:
        manager = harness.manager()
        desired = DesiredRole(
            name=spec.name, version=spec.version, target=role_target(spec.name, spec.version)
        )
        outcome = manager.apply([desired], lambda role: FetchedBundle(archive))
        assert outcome == {"audio-player": RoleOutcome.APPLIED}, harness.kinds()
        assert _present(docker_engine, built.image_id)
        [status] = manager.status()
        assert (status.version, status.health) == (spec.version, Health.HEALTHY)

        greeting, *_ = mpd_command(port, "ping").splitlines()
        assert greeting.startswith("OK MPD ")
        outputs = mpd_command(port, "outputs")
        assert "outputname: device output" in outputs and "plugin: alsa" in outputs
    finally:
        harness.cleanup()


def test_an_unknown_package_is_one_clear_error(tmp_path: Path) -> None:
    unknown = recipe.parse(
        {"name": "x", "packages": ["no-such-package-here"], "cmd": ["/x"]}, source="test"
    )
    with pytest.raises(PackageError, match="E: Unable to locate package no-such-package-here"):
        build.build(unknown, recipe.Arch.ARM64, tmp_path / "out")
    assert not (tmp_path / "out").exists()
