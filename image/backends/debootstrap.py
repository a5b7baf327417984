"""The debootstrap backend: a Debian arm64 fleet rootfs under qemu-user, for CI and QEMU.

Two layers. The base (debootstrap plus every Debian package, kernel and firmware, and the rest
of stage-fleet's package sub-stage: Docker Compose v2) is cached under a key made of its
inputs, because it is the slow part. Each build copies the base and runs the other sub-stages
of pi-gen-config/stage-fleet on it, the same scripts pi-gen runs, then installs the updater
from a wheelhouse of aarch64 wheels downloaded on the host, and the safe-mode stack with its
image (``image.safemode``), built on the host too: neither touches the cached base.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from fleetcore.errors import CommandError
from fleetcore.filelock import held
from fleetcore.run import run
from image import safemode
from image.backends import basecache, chroot, mounts, stages, wheelhouse, workdir
from image.backends.base import ROOTFS, STAGE_DIR, UPDATER_UNIT, Backend, stage_settings
from image.errors import BuildError
from image.progress import step

# Bump when the base recipe below changes, so old cache entries are not reused.
RECIPE = 2
BASE_PACKAGES = (
    "systemd-sysv", "systemd-resolved", "systemd-timesyncd", "udev", "kmod", "dbus",
    "iproute2", "netbase", "ca-certificates", "python3", "initramfs-tools", "zstd",
    "linux-image-arm64", "raspi-firmware", "firmware-brcm80211", "wpasupplicant",
)  # fmt: skip
# stage-fleet's package sub-stage runs in the cached base (its list and its scripts, such as the
# Compose v2 plugin's, are part of the cache key).
PACKAGES = STAGE_DIR / stages.PACKAGES_SUBSTAGE
# Sub-stages the per-build layer does not run: the packages are in the base, and the export
# step tars the rootfs for fleet-image, while here the rootfs folder already is the result.
SKIPPED_SUBSTAGES = frozenset({stages.PACKAGES_SUBSTAGE, "05-export"})
DPKG_EXCLUDES = """\
# Documentation and translations are dead weight on a read-only appliance image.
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
"""
NETWORK = """\
# Debootstrap builds (CI, QEMU): DHCP on every wired interface.
[Match]
Name=en* eth*

[Network]
DHCP=yes
"""
# The last console is /dev/console: ttyAMA0 is the QEMU virt serial port (and a Pi's PL011).
CMDLINE = "console=tty1 console=ttyS1,115200 console=ttyAMA0,115200 net.ifnames=0\n"
KERNEL = "vmlinuz"
INITRD = "initrd.img"
# Base builds in progress: .partial-<pid>-<random> in the cache folder.
_PARTIAL = ".partial-"
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "INITRD": "No"}


class DebootstrapBackend(Backend):
    def _build(self, out: Path) -> Path:
        base = self._base()
        target = out / ROOTFS
        with workdir.partial_output(target) as partial:
            with step("copy cached base rootfs"):
                run(["cp", "-a", "--reflink=auto", base, partial])
            self._customise(partial)
        return target

    # -- base layer -------------------------------------------------------------------------

    def cache_key(self) -> str:
        cfg = self.config
        inputs = {
            "recipe": RECIPE,
            "suite": cfg.suite,
            "mirror": cfg.mirror,
            "packages": sorted({*BASE_PACKAGES, *stages.package_lists(STAGE_DIR), *cfg.packages}),
            "dpkg_excludes": DPKG_EXCLUDES,
            "packages_substage": {
                path.relative_to(PACKAGES).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
                for path in sorted(PACKAGES.rglob("*"))
                if path.is_file()
            },
        }
        return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32]

    def _base(self) -> Path:
        entry = self.config.cache_dir / self.cache_key()
        rootfs = entry / ROOTFS
        self.config.cache_dir.mkdir(parents=True, exist_ok=True)
        # One build per key at a time: a second builder (the test tiers run side by side)
        # waits for the first and then takes its result from the cache.
        with held(basecache.lock_path(self.config.cache_dir, entry.name)):
            if rootfs.is_dir():
                print(f"fleet-image: base rootfs from cache {entry}", file=sys.stderr)
                basecache.mark_used(entry)
                return rootfs
            _remove_dead_partials(self.config.cache_dir)
            work = Path(
                tempfile.mkdtemp(prefix=f"{_PARTIAL}{os.getpid()}-", dir=self.config.cache_dir)
            )
            try:
                self._build_base(work / ROOTFS)
                mounts.remove_tree(entry)
                work.rename(entry)
                basecache.mark_used(entry)
            finally:
                mounts.remove_tree(work)
        for old in basecache.prune(self.config.cache_dir):
            print(f"fleet-image: removed an old base rootfs {old}", file=sys.stderr)
        return rootfs

    def _build_base(self, rootfs: Path) -> None:
        cfg = self.config
        with step(f"debootstrap {cfg.suite} arm64 (qemu-user)"):
            self._run(
                [
                    "debootstrap", "--arch=arm64", "--variant=minbase",
                    "--components=main,non-free-firmware", cfg.suite, rootfs, cfg.mirror,
                ]
            )  # fmt: skip
        (rootfs / "etc/dpkg/dpkg.cfg.d/01-fleet-nodoc").write_text(DPKG_EXCLUDES)
        (rootfs / "etc/dpkg/dpkg.cfg.d/02-fleet-unsafe-io").write_text("force-unsafe-io\n")
        (rootfs / "etc/apt/sources.list").write_text(
            f"deb {cfg.mirror} {cfg.suite} main non-free-firmware\n"
        )
        (rootfs / "etc/apt/apt.conf.d/90-fleet").write_text(
            'APT::Install-Recommends "false";\nAcquire::Languages "none";\n'
        )
        policy = rootfs / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\n# No daemon starts inside the build chroot.\nexit 101\n")
        policy.chmod(0o755)
        _copy_resolv_conf(rootfs)
        packages = sorted({*BASE_PACKAGES, *stages.package_lists(STAGE_DIR), *cfg.packages})
        with chroot.mounted(rootfs):
            with step("apt-get update"):
                self._run(chroot.chroot_argv(rootfs, "apt-get", "update", "-q"), env=APT_ENV)
            with step(f"install {len(packages)} packages with their dependencies (qemu-user)"):
                self._run(
                    chroot.chroot_argv(rootfs, "apt-get", "install", "-y", "-q", *packages),
                    env=APT_ENV,
                )
            self._run(chroot.chroot_argv(rootfs, "apt-get", "clean"))
            # The sub-stage's scripts (the Compose v2 plugin) fetch from the mirror too.
            with _host_dns(rootfs):
                stages.run_substage(
                    PACKAGES, rootfs, {"FLEET_DEBIAN_MIRROR": cfg.mirror, **APT_ENV}
                )
        shutil.rmtree(rootfs / "var/lib/apt/lists")
        (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True)

    # -- per-build layer --------------------------------------------------------------------

    def _customise(self, rootfs: Path) -> None:
        cfg = self.config
        (rootfs / "etc/systemd/network").mkdir(parents=True, exist_ok=True)
        (rootfs / "etc/systemd/network/50-wired.network").write_text(NETWORK)
        firmware = rootfs / "boot/firmware"
        firmware.mkdir(parents=True, exist_ok=True)
        with (
            tempfile.TemporaryDirectory(prefix="fleet-wheels-") as wheels,
            tempfile.TemporaryDirectory(prefix="fleet-safe-mode-") as safe_mode,
        ):
            with step("download aarch64 wheels of the updater"):
                wheelhouse.build(Path(wheels))
            env = {
                "FLEET_WHEELHOUSE": wheels,
                "FLEET_SAFE_MODE": str(safemode.prepare(Path(safe_mode))),
                "FLEET_ROOT_JSON": str(cfg.root_json),
                "FLEET_UPDATER_UNIT": str(UPDATER_UNIT),
                **stage_settings(cfg),
                "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "0"),
                **APT_ENV,
            }
            with chroot.mounted(rootfs):
                stages.run_stage(STAGE_DIR, rootfs, env, skip=SKIPPED_SUBSTAGES)
                self._run(
                    chroot.chroot_argv(
                        rootfs, "systemctl", "enable", "systemd-networkd", "systemd-resolved"
                    )
                )
        _boot_files(rootfs)
        (rootfs / "usr/sbin/policy-rc.d").unlink()
        resolv = rootfs / "etc/resolv.conf"
        resolv.unlink(missing_ok=True)
        resolv.symlink_to("../run/systemd/resolve/stub-resolv.conf")
        for leftover in ("var/log", "var/cache/apt", "var/cache/debconf", "tmp"):
            _empty(rootfs / leftover)

    def _run(self, argv: Sequence[str | Path], env: dict[str, str] | None = None) -> None:
        try:
            run(argv, env=env, capture=False)
        except CommandError as err:
            raise BuildError(f"{err}", hint="see the output above for the failing step") from err


def _remove_dead_partials(cache_dir: Path) -> None:
    """Delete (unmounting first) base builds left by processes that no longer run."""
    for partial in cache_dir.glob(f"{_PARTIAL}*"):
        pid = partial.name.removeprefix(_PARTIAL).split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            mounts.remove_tree(partial)


def _copy_resolv_conf(rootfs: Path) -> None:
    resolv = rootfs / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    shutil.copyfile("/etc/resolv.conf", resolv)


@contextlib.contextmanager
def _host_dns(rootfs: Path) -> Iterator[None]:
    """The build host's resolv.conf in the chroot while the block runs; a link that was there
    (systemd-resolved's stub, made by its postinst) is put back afterwards."""
    resolv = rootfs / "etc/resolv.conf"
    link = resolv.readlink() if resolv.is_symlink() else None
    _copy_resolv_conf(rootfs)
    try:
        yield
    finally:
        if link is not None:
            resolv.unlink(missing_ok=True)
            resolv.symlink_to(link)


def _boot_files(rootfs: Path) -> None:
    """Fixed names in boot/firmware: vmlinuz, initrd.img, config.txt and cmdline.txt.

    raspi-firmware's kernel hooks copy the versioned kernel and initramfs there; renaming them
    keeps one copy each and gives the QEMU tier stable names for -kernel/-initrd.
    """
    firmware = rootfs / "boot/firmware"
    kernels = sorted((rootfs / "lib/modules").iterdir())
    if not kernels:
        raise BuildError("no kernel installed in the rootfs")
    version = kernels[-1].name
    for src, dest in [(f"vmlinuz-{version}", KERNEL), (f"initrd.img-{version}", INITRD)]:
        versioned = firmware / src
        if versioned.is_file():
            versioned.replace(firmware / dest)
        elif (rootfs / "boot" / src).is_file():
            shutil.copyfile(rootfs / "boot" / src, firmware / dest)
        else:
            raise BuildError(f"rootfs lacks /boot/{src}")
    config = firmware / "config.txt"
    if not config.is_file():
        raise BuildError("raspi-firmware did not write boot/firmware/config.txt")
    lines = [
        line
        for line in config.read_text().splitlines()
        if not line.startswith(("kernel=", "initramfs "))
    ]
    lines += [f"kernel={KERNEL}", f"initramfs {INITRD} followkernel"]
    config.write_text("\n".join(lines) + "\n")
    (firmware / "cmdline.txt").write_text(CMDLINE)


def _empty(path: Path) -> None:
    if not path.is_dir():
        return
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
