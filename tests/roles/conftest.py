"""Docker fixtures for the role tests: a local busybox image and an isolated role manager.

There is no registry: the image is ``docker import`` of a root filesystem holding Debian's
busybox-static, and bundles refer to it by its image ID (``sha256:<id>``), the local form of
digest pinning the validator accepts.

Every test using ``harness`` runs twice: with the compose v2 plugin (``docker compose``, what
devices run; scripts/lib/host.sh installs it) and with Debian's docker-compose v1. A missing
flavour fails the test.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleetcore.net import free_port
from updater.roles.compose import ComposeFlavor
from updater.roles.manager import ManagerConfig, RoleEvent, RoleManager

from .helpers import REPO

BUSYBOX = Path("/usr/bin/busybox")
APPLETS = ("sh", "httpd", "wget", "sleep", "cat", "echo", "test", "ls", "true", "false")
SAFE_MODE_IMAGE = (
    "busybox:1.37.0-musl@sha256:fc6dddc4c44b1bfe37f41cae8e67d1693828e8f42a91862816d7953e2c9d3f23"
)


def _rootfs_tar() -> bytes:
    if not BUSYBOX.is_file():
        pytest.fail("busybox-static is not installed (scripts/apt-packages.txt)")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("bin", "tmp", "www", "config"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        data = BUSYBOX.read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def busybox_image(docker_engine: str) -> Iterator[str]:
    """Image ID (``sha256:...``) of a busybox image made with ``docker import``."""
    tag = f"metrica-test/roles-busybox:{secrets.token_hex(4)}"
    out = subprocess.run(
        [docker_engine, "import", "--change", 'CMD ["sh"]', "-", tag],
        input=_rootfs_tar(),
        capture_output=True,
        check=True,
    )
    image_id = out.stdout.decode().strip()
    yield image_id
    subprocess.run([docker_engine, "rmi", "--force", tag], capture_output=True, check=False)


@pytest.fixture(scope="session")
def saved_image(
    docker_engine: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """(ID, folder) of a second imported busybox image, ``docker save``d as ``<hex>.tar`` there.

    The folder is what ``roles pack --images`` takes. The image is untagged (saved by ID, so
    ``RepoTags`` is null), as a device gets it when it loads the archive.
    """
    folder = tmp_path_factory.mktemp("saved-images")
    out = subprocess.run(
        [docker_engine, "import", "--change", 'CMD ["sh"]', "-"],
        input=_rootfs_tar(),
        capture_output=True,
        check=True,
    )
    image_id = out.stdout.decode().strip()
    archive = folder / f"{image_id.removeprefix('sha256:')}.tar"
    subprocess.run(
        [docker_engine, "save", "-o", str(archive), image_id], capture_output=True, check=True
    )
    yield image_id, folder
    subprocess.run([docker_engine, "rmi", image_id], capture_output=True, check=False)


def remove_image(docker: str, image_id: str) -> None:
    """Take ``image_id`` out of the engine (as ``docker image prune -a`` would) and check."""
    subprocess.run([docker, "rmi", image_id], capture_output=True, check=False)
    probe = subprocess.run([docker, "image", "inspect", image_id], capture_output=True)
    assert probe.returncode != 0, f"{image_id} is still in the engine"


@pytest.fixture
def offline_image(saved_image: tuple[str, Path], docker_engine: str) -> tuple[str, Path]:
    """The saved image, absent from the engine: only its archive can bring it back."""
    remove_image(docker_engine, saved_image[0])
    return saved_image


def _safe_mode_copy(dest: Path, image: str) -> Path:
    """The shipped safe-mode stack on the local image, a free port and a quick probe."""
    shutil.copytree(REPO / "safe-mode", dest)
    port = str(free_port())
    for name in ("role.yaml", "compose.yaml"):
        path = dest / name
        text = path.read_text().replace(SAFE_MODE_IMAGE, image).replace("8088", port)
        path.write_text(text.replace("interval: 10s", "interval: 1s"))
    return dest


class Harness:
    def __init__(self, tmp: Path, image: str, docker: str, flavor: ComposeFlavor) -> None:
        self.tmp = tmp
        self.image = image
        self.docker = docker
        self.flavor = flavor
        self.prefix = f"rt{secrets.token_hex(3)}-"
        self.events: list[RoleEvent] = []
        self.config = ManagerConfig(
            device_id="test-device",
            root=tmp / "roles",
            safe_mode_bundle=_safe_mode_copy(tmp / "safe-mode", image),
            role_config_dir=tmp / "role-config",
            safe_mode_after=2,
            project_prefix=self.prefix,
            poll_s=0.2,
            compose=flavor,
        )

    def manager(self, checkpoint: Callable[[str], None] | None = None) -> RoleManager:
        if checkpoint is None:
            return RoleManager(self.config, on_event=self.events.append)
        return RoleManager(self.config, on_event=self.events.append, checkpoint=checkpoint)

    def kinds(self) -> list[str]:
        return [event.kind.value for event in self.events]

    def containers(self) -> list[str]:
        out = subprocess.run(
            [self.docker, "ps", "-aq", "--filter", f"name={self.prefix}"],
            capture_output=True,
            check=True,
        )
        return out.stdout.decode().split()

    def crash(self) -> None:
        """Kill the role's processes from the host, as a crash would; docker restarts them.

        Returns once docker has seen every kill (the restart count moved or the container is
        no longer running), so the next health check cannot read the state from before it.
        """

        def inspect(container: str) -> tuple[int, int, bool]:
            out = (
                subprocess.run(
                    [
                        self.docker,
                        "inspect",
                        "--format",
                        "{{.State.Pid}} {{.RestartCount}} {{.State.Running}}",
                        container,
                    ],
                    capture_output=True,
                    check=True,
                )
                .stdout.decode()
                .split()
            )
            return int(out[0]), int(out[1]), out[2] == "true"

        for container in self.containers():
            pid, restarts, _ = inspect(container)
            if pid <= 0:
                continue
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                _, now_restarts, running = inspect(container)
                if now_restarts > restarts or not running:
                    break
                time.sleep(0.1)
            else:
                raise AssertionError(f"docker did not notice the kill of {container} in 60 s")

    def cleanup(self) -> None:
        ids = self.containers()
        if ids:
            subprocess.run([self.docker, "rm", "-f", *ids], capture_output=True, check=False)
        nets = subprocess.run(
            [self.docker, "network", "ls", "-q", "--filter", f"name={self.prefix}"],
            capture_output=True,
            check=False,
        ).stdout.split()
        if nets:
            subprocess.run(
                [self.docker, "network", "rm", *[n.decode() for n in nets]],
                capture_output=True,
                check=False,
            )


@pytest.fixture(params=[ComposeFlavor.V2, ComposeFlavor.V1], ids=["compose-v2", "compose-v1"])
def harness(
    request: pytest.FixtureRequest, tmp_path: Path, busybox_image: str, docker_engine: str
) -> Iterator[Harness]:
    h = Harness(tmp_path, busybox_image, docker_engine, request.param)
    try:
        yield h
    finally:
        h.cleanup()
