"""The rootfs pairs bench_delta measures: real Debian updates applied with apt in a chroot.

Each update kind is a copy of the fleet base rootfs (Debian bookworm, the point release the
debootstrap backend installs) changed by apt under qemu-user, kept under ``--cache`` so the
CPU-heavy builds run once and every later bench run reuses them:

- ``one-package``: ``htop`` installed;
- ``security``: about ten packages upgraded from bookworm-security / bookworm-updates, libc
  and openssl among them when the archive has newer ones;
- ``kernel``: ``linux-image-arm64`` upgraded to the new kernel ABI package, the old one purged
  (a release image is built afresh, so it holds only the new kernel);
- ``monthly``: everything upgraded from bookworm-security and bookworm-updates, the old kernel
  purged likewise (the nearest to "two snapshots a month apart" the archive allows:
  snapshot.debian.org is not reachable).

    python bench/rootfs_variants.py --rootfs BASE [--cache /var/tmp/bench-delta-cache] [KIND...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from image.backends import chroot

DEFAULT_CACHE = Path("/var/tmp/bench-delta-cache")
SECURITY_SOURCES = (
    "deb http://deb.debian.org/debian-security bookworm-security main\n"
    "deb http://deb.debian.org/debian bookworm-updates main\n"
)
# Upgraded first in the security kind; the rest of its ten are the first upgradable others.
SECURITY_FIRST = ("libc6", "libc-bin", "libssl3", "openssl")
SECURITY_COUNT = 10


def _apt(rootfs: Path, *argv: str, capture: bool = False) -> str:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "INITRD": "No", "LANG": "C.UTF-8"}
    done = subprocess.run(
        ["chroot", str(rootfs), *argv],
        check=True,
        env=env,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        text=True,
    )
    return done.stdout or ""


def _upgradable(rootfs: Path) -> list[str]:
    out = _apt(rootfs, "apt-get", "-s", "-q", "upgrade", capture=True)
    return [line.split()[1] for line in out.splitlines() if line.startswith("Inst ")]


def install(rootfs: Path, package: str) -> str:
    _apt(rootfs, "apt-get", "install", "-y", "-q", "--no-install-recommends", package)
    return f"+{package}"


def one_package(rootfs: Path) -> str:
    return install(rootfs, "htop")


def security(rootfs: Path) -> str:
    upgradable = _upgradable(rootfs)
    chosen = [p for p in SECURITY_FIRST if p in upgradable]
    chosen += [p for p in upgradable if p not in chosen and not p.startswith("linux-")]
    chosen = chosen[:SECURITY_COUNT]
    _apt(rootfs, "apt-get", "install", "-y", "-q", "--only-upgrade", *chosen)
    return "upgraded " + " ".join(chosen)


def _kernels(rootfs: Path) -> set[str]:
    return {p.name.removeprefix("vmlinuz-") for p in (rootfs / "boot").glob("vmlinuz-*")}


def _purge_old_kernels(rootfs: Path, old: set[str]) -> str:
    new = _kernels(rootfs) - old
    if new and old:
        _apt(rootfs, "apt-get", "purge", "-y", "-q", *(f"linux-image-{k}" for k in sorted(old)))
    return f"kernel {' '.join(sorted(old))} -> {' '.join(sorted(new)) or 'unchanged'}"


def kernel(rootfs: Path) -> str:
    old = _kernels(rootfs)
    _apt(rootfs, "apt-get", "install", "-y", "-q", "--only-upgrade", "linux-image-arm64")
    return "linux-image-arm64 upgraded, " + _purge_old_kernels(rootfs, old)


def monthly(rootfs: Path) -> str:
    old = _kernels(rootfs)
    count = len(_upgradable(rootfs))
    _apt(rootfs, "apt-get", "upgrade", "-y", "-q", "--with-new-pkgs")
    return f"apt-get upgrade: {count} packages, " + _purge_old_kernels(rootfs, old)


KINDS: dict[str, Callable[[Path], str]] = {
    "one-package": one_package,
    "security": security,
    "kernel": kernel,
    "monthly": monthly,
}


def build(base: Path, kind: str, cache: Path) -> Path:
    """The rootfs of ``kind`` (built once, then taken from ``cache``); its change is in
    ``<cache>/<kind>/change.txt``."""
    entry = cache / kind
    if (entry / "change.txt").exists():
        return entry / "rootfs"
    shutil.rmtree(entry, ignore_errors=True)
    entry.mkdir(parents=True)
    rootfs = entry / "rootfs"
    print(f"building the {kind} rootfs in {rootfs} ...", flush=True)
    subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(rootfs)], check=True)
    change = with_network(rootfs, KINDS[kind], security_sources=kind != "one-package")
    (entry / "change.txt").write_text(change + "\n")
    return rootfs


def with_network(rootfs: Path, step: Callable[[Path], str], *, security_sources: bool) -> str:
    """Run ``step`` with the host's resolver, services kept from starting and apt lists
    fetched; the rootfs is left as the image builder leaves it (no lists, no extra sources)."""
    resolv = rootfs / "etc/resolv.conf"
    saved = resolv.readlink() if resolv.is_symlink() else None
    resolv.unlink(missing_ok=True)
    shutil.copyfile("/etc/resolv.conf", resolv)
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    extra = rootfs / "etc/apt/sources.list.d/bench-updates.list"
    if security_sources:
        extra.write_text(SECURITY_SOURCES)
    try:
        with chroot.mounted(rootfs):
            _apt(rootfs, "apt-get", "update", "-q")
            change = step(rootfs)
            _apt(rootfs, "apt-get", "clean")
        return change
    finally:
        extra.unlink(missing_ok=True)
        policy.unlink()
        resolv.unlink()
        if saved is not None:
            resolv.symlink_to(saved)
        shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
        (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rootfs", type=Path, required=True, help="the base rootfs")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("kinds", nargs="*", help=f"of {', '.join(KINDS)} (default: all)")
    args = parser.parse_args()
    unknown = set(args.kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown update kinds: {', '.join(sorted(unknown))}")
    for kind in args.kinds or KINDS:
        build(args.rootfs, kind, args.cache)
        print(f"{kind}: {(args.cache / kind / 'change.txt').read_text().strip()}", flush=True)


if __name__ == "__main__":
    main()
