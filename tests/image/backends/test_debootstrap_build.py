"""A real debootstrap build (arm64 under qemu-user): slow, so one build per test session.

The base rootfs comes from the content-keyed cache when it is warm (default
/var/cache/metrica-fleet/rootfs, or FLEET_IMAGE_CACHE); a cold cache builds it (~10-12 min on
a busy 2-core host), fetching the Compose v2 plugin from Debian trixie.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from fleetcore.release import Hardware
from image import encrypteddata
from image.backends.base import UPDATER_UNIT
from image.bootfiles import BootFiles
from image.cli import main
from image.config import DEFAULT_CACHE
from tests.image.conftest import FIXTURES, assert_safe_mode_shipped

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def built_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0:
        pytest.fail(
            "the debootstrap build needs root (chroot, mounts): run it through scripts/test"
        )
    work = tmp_path_factory.mktemp("debootstrap")
    cache = Path(os.environ.get("FLEET_IMAGE_CACHE", DEFAULT_CACHE))
    config = work / "build.yaml"
    config.write_text(
        f"root_json: {FIXTURES / 'root.json'}\nhostname: metrica-ci\ncache_dir: {cache}\n"
    )
    out = work / "out"
    assert (
        main(["build", "--backend", "debootstrap", "--config", str(config), "--out", str(out)]) == 0
    )
    return out / "rootfs"


def test_updater_installed(built_rootfs: Path):
    venv = built_rootfs / "opt/metrica-fleet"
    assert (venv / "bin/fleet-updater").is_file()
    site = venv / "lib/python3.11/site-packages"
    for package in (
        "updater",
        "fleetcore",
        "signing",
        "tuf",
        "securesystemslib",
        "zstandard",
        "httpx",
    ):
        assert (site / package).is_dir(), package
    # aarch64 wheels, not the build host's
    (so,) = (site / "zstandard").glob("backend_c*.so")
    assert "aarch64" in so.name
    assert not (venv / "bin/pip").exists()


def test_only_device_commands_and_they_run_on_arm64(built_rootfs: Path):
    bin_dir = built_rootfs / "opt/metrica-fleet/bin"
    commands = {
        p.name
        for p in bin_dir.iterdir()
        if not p.name.startswith(("python", "activate", "Activate"))
    }
    assert commands == {"fleet-updater"}
    # Under qemu-user through binfmt: imports resolve with the device extra alone.
    help_text = subprocess.run(
        ["chroot", built_rootfs, "/opt/metrica-fleet/bin/fleet-updater", "--help"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert "usage: fleet-updater" in help_text


def test_updater_unit_and_root_json(built_rootfs: Path):
    unit = built_rootfs / "etc/systemd/system/fleet-updater.service"
    assert unit.read_bytes() == UPDATER_UNIT.read_bytes()
    assert (
        built_rootfs / "etc/systemd/system/multi-user.target.wants/fleet-updater.service"
    ).is_symlink()
    assert (built_rootfs / "etc/metrica-fleet/root.json").read_bytes() == (
        FIXTURES / "root.json"
    ).read_bytes()


def test_boot_files_for_pi_and_qemu(built_rootfs: Path):
    firmware = built_rootfs / "boot/firmware"
    for name in (
        "vmlinuz",
        "initrd.img",
        "config.txt",
        "cmdline.txt",
        "start4.elf",
        "bcm2711-rpi-4-b.dtb",
    ):
        assert (firmware / name).is_file(), name
    config = (firmware / "config.txt").read_text().splitlines()
    assert "kernel=vmlinuz" in config and "initramfs initrd.img followkernel" in config
    # Debian bookworm's kernel has no BCM2712 device tree: the image serves the Pi 4 family
    # (the CM4 through its upstream tree name, raspi-firmware writes upstream_kernel=1).
    files = BootFiles.read(firmware)
    assert files.families() == [Hardware.PI4], files.missing_for(Hardware.PI5)


def _cpio_names(data: bytes) -> list[str]:
    """Member names of a newc cpio archive (no cpio binary on the test host)."""
    names, pos = [], 0
    while data[pos : pos + 6] == b"070701":
        size = int(data[pos + 54 : pos + 62], 16)
        namesize = int(data[pos + 94 : pos + 102], 16)
        name = data[pos + 110 : pos + 110 + namesize - 1].decode()
        if name == "TRAILER!!!":
            break
        names.append(name)
        pos = (pos + 110 + namesize + 3) & ~3
        pos = (pos + size + 3) & ~3
    return names


def test_initramfs_is_small_and_mounts_data(built_rootfs: Path):
    initrd = built_rootfs / "boot/firmware/initrd.img"
    data = subprocess.run(["zstdcat", initrd], capture_output=True, check=True).stdout
    listing = "\n".join(_cpio_names(data))
    assert "scripts/init-bottom/fleet-data" in listing
    for module in ("erofs.ko", "virtio_blk.ko", "ext4.ko", "sdhci-iproc.ko"):
        assert module in listing, module
    assert initrd.stat().st_size < 16 * 2**20


def test_read_only_root_layout(built_rootfs: Path):
    etc = built_rootfs / "etc"
    assert (etc / "machine-id").readlink() == Path("/data/etc/machine-id")
    assert (etc / "hostname").readlink() == Path("/data/etc/hostname")
    fstab = (etc / "fstab").read_text()
    assert "PARTLABEL=data" in fstab and "/var/lib/docker" in fstab
    daemon = (etc / "docker/daemon.json").read_text()
    assert '"data-root": "/data/var/lib/docker"' in daemon
    assert '"deprecated-key-path": "/data/var/lib/docker/key.json"' in daemon
    assert (built_rootfs / "usr/sbin/apparmor_parser").is_file()  # dockerd's docker-default
    assert (built_rootfs / "usr/share/metrica-fleet/hostname").read_text().strip() == "metrica-ci"
    assert (built_rootfs / encrypteddata.SETTING_FILE).read_text() == "ext4\n"  # the default
    assert not list(etc.glob("ssh/ssh_host_*"))
    connections = etc / "NetworkManager/system-connections"
    assert connections.readlink() == Path("/data/etc/NetworkManager/system-connections")
    assert "/var/lib/NetworkManager" in fstab
    country = etc / "modprobe.d/metrica-wifi-country.conf"
    assert country.readlink() == Path("/data/etc/modprobe.d/metrica-wifi-country.conf")
    init_bottom = (etc / "initramfs-tools/scripts/init-bottom/fleet-data").read_text()
    assert '"$d/etc/NetworkManager/system-connections"' in init_bottom
    assert '"$d/etc/modprobe.d/metrica-wifi-country.conf"' in init_bottom
    assert not (built_rootfs / "usr/sbin/policy-rc.d").exists()


def test_personalisation_tools(built_rootfs: Path):
    """What updater/personalise.py runs: iw and rfkill for the Wi-Fi country, and a hostname
    that resolves after a rename (libnss-myhostname, enabled by its postinst)."""
    for tool in ("usr/sbin/iw", "usr/sbin/rfkill"):
        assert (built_rootfs / tool).is_file(), tool
    hosts = [
        line.split()
        for line in (built_rootfs / "etc/nsswitch.conf").read_text().splitlines()
        if line.startswith("hosts:")
    ]
    assert hosts and "myhostname" in hosts[0]
    # A fresh UTS namespace stands for a renamed device: the new name resolves with no
    # /etc/hosts entry.
    resolved = subprocess.run(
        ["unshare", "--uts", "sh", "-c",
         'hostname metrica-renamed && exec chroot "$1" getent hosts metrica-renamed',
         "sh", built_rootfs],
        capture_output=True,
        check=True,
    ).stdout.decode()  # fmt: skip
    assert "metrica-renamed" in resolved.split()


# Run by the image's own updater (the venv's python) in the arm64 chroot, with the PATH of
# fleet-updater.service: which compose implementation the role manager picks on a device.
DETECT = """
from updater.roles.compose import ComposeV2, detect
compose = detect()
assert isinstance(compose, ComposeV2), compose
print(" ".join(compose.argv))
"""
PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# A hang of a Go binary under qemu-user fails the test instead of blocking the run.
HANG_GUARD_S = 300


def _in_chroot(rootfs: Path, *argv: str) -> str:
    return subprocess.run(
        ["chroot", rootfs, "/usr/bin/env", "-i", PATH, *argv],
        capture_output=True,
        check=True,
        timeout=HANG_GUARD_S,
    ).stdout.decode()


def test_compose_v2_plugin(built_rootfs: Path):
    """`docker compose` is v2 on the device: the CLI plugin fetched from Debian trixie."""
    version = _in_chroot(built_rootfs, "docker", "compose", "version", "--short").strip()
    assert version.removeprefix("v").startswith("2."), version
    plugin = built_rootfs / "usr/libexec/docker/cli-plugins/docker-compose"
    assert plugin.is_file() and plugin.stat().st_mode & 0o111
    source = (built_rootfs / "usr/share/doc/docker-compose/SOURCE").read_text()
    assert f"docker-compose {version.removeprefix('v')}" in source and "Debian trixie" in source
    assert (built_rootfs / "usr/share/doc/docker-compose/copyright").is_file()
    # Only the binary: trixie is in no apt source of the image, and dpkg has no compose
    # package (so no v1 either: `docker-compose` is not on the PATH).
    sources = [built_rootfs / "etc/apt/sources.list"]
    sources += (built_rootfs / "etc/apt/sources.list.d").glob("*")
    assert not any("trixie" in path.read_text() for path in sources)
    status = (built_rootfs / "var/lib/dpkg/status").read_text()
    assert not re.search(r"^Package: docker-compose$", status, re.M)
    assert not (built_rootfs / "usr/bin/docker-compose").exists()


def test_role_manager_picks_compose_v2(built_rootfs: Path):
    out = _in_chroot(built_rootfs, "/opt/metrica-fleet/bin/python", "-c", DETECT)
    assert out.split() == ["docker", "compose"]


def test_safe_mode_stack_ships_with_its_image(built_rootfs: Path):
    assert_safe_mode_shipped(built_rootfs)
