import shutil
import subprocess
from pathlib import Path

import pytest

from image import config
from image.backends import debootstrap
from image.backends.debootstrap import DebootstrapBackend, _boot_files, _host_dns
from image.backends.pigen import PiGenBackend
from image.errors import BuildError, InputError
from tests.image.conftest import FIXTURES


def _config(tmp_path: Path, **extra: object) -> config.BuildConfig:
    return config.load(FIXTURES / "build.yaml").model_copy(update={"cache_dir": tmp_path, **extra})


def test_cache_key_follows_inputs(tmp_path: Path):
    base = DebootstrapBackend(_config(tmp_path))
    same = DebootstrapBackend(_config(tmp_path))
    other = DebootstrapBackend(_config(tmp_path, packages=("jq", "curl")))
    mirror = DebootstrapBackend(_config(tmp_path, mirror="http://mirror.example/debian"))
    assert base.cache_key() == same.cache_key()
    assert len({base.cache_key(), other.cache_key(), mirror.cache_key()}) == 3


def test_cache_key_follows_the_package_substage_scripts(tmp_path: Path, monkeypatch):
    """The base runs stage-fleet's 00-packages scripts (the Compose v2 plugin): editing one
    must not reuse a base built by the old script."""
    backend = DebootstrapBackend(_config(tmp_path))
    before = backend.cache_key()
    copy = tmp_path / "00-packages"
    shutil.copytree(debootstrap.PACKAGES, copy)
    monkeypatch.setattr(debootstrap, "PACKAGES", copy)
    assert backend.cache_key() == before
    script = copy / "01-run-chroot.sh"
    script.write_text(script.read_text().replace("COMPOSE_SUITE=trixie", "COMPOSE_SUITE=forky"))
    assert backend.cache_key() != before


def test_base_has_the_packages_and_builds_skip_them():
    assert debootstrap.PACKAGES.name in debootstrap.SKIPPED_SUBSTAGES
    assert (debootstrap.PACKAGES / "01-run-chroot.sh").is_file()


def test_host_dns_puts_the_stub_link_back(tmp_path: Path):
    resolv = tmp_path / "etc/resolv.conf"
    resolv.parent.mkdir()
    resolv.symlink_to("../run/systemd/resolve/stub-resolv.conf")
    with _host_dns(tmp_path):
        assert not resolv.is_symlink()
        assert resolv.read_bytes() == Path("/etc/resolv.conf").read_bytes()
    assert resolv.readlink() == Path("../run/systemd/resolve/stub-resolv.conf")


def test_boot_files_get_fixed_names(tmp_path: Path):
    rootfs = tmp_path / "r"
    (rootfs / "lib/modules/6.1.0-9-arm64").mkdir(parents=True)
    firmware = rootfs / "boot/firmware"
    firmware.mkdir(parents=True)
    (firmware / "vmlinuz-6.1.0-9-arm64").write_bytes(b"kernel")
    (firmware / "initrd.img-6.1.0-9-arm64").write_bytes(b"initrd")
    (firmware / "config.txt").write_text(
        "arm_64bit=1\nkernel=vmlinuz-6.1.0-9-arm64\ninitramfs initrd.img-6.1.0-9-arm64\n"
    )
    _boot_files(rootfs)
    assert sorted(p.name for p in firmware.iterdir()) == [
        "cmdline.txt",
        "config.txt",
        "initrd.img",
        "vmlinuz",
    ]
    assert (firmware / "config.txt").read_text() == (
        "arm_64bit=1\nkernel=vmlinuz\ninitramfs initrd.img followkernel\n"
    )


def test_boot_files_need_a_kernel(tmp_path: Path):
    (tmp_path / "lib/modules").mkdir(parents=True)
    with pytest.raises(BuildError, match="no kernel"):
        _boot_files(tmp_path)


def test_pi_gen_needs_a_checkout(tmp_path: Path):
    with pytest.raises(InputError, match="pi-gen checkout"):
        PiGenBackend(_config(tmp_path)).build(tmp_path / "out")


def test_pi_gen_export_is_unpacked(tmp_path: Path):
    tree = tmp_path / "tree"
    (tree / "boot/firmware").mkdir(parents=True)
    (tree / "etc").mkdir()
    (tree / "etc/os-release").write_text("ID=raspbian\n")
    tar = tmp_path / "export.tar"
    subprocess.run(["tar", "-C", tree, "-cf", tar, "."], check=True)
    rootfs = PiGenBackend(_config(tmp_path))._unpack(tar, tmp_path / "out")
    assert (rootfs / "etc/os-release").read_text() == "ID=raspbian\n"
    with pytest.raises(BuildError, match="export step"):
        PiGenBackend(_config(tmp_path))._unpack(tmp_path / "missing.tar", tmp_path / "out2")
