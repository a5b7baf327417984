"""What a seeded device downloads for a one-package change, beside the full image and zstd.

Two system images are made from a fleet rootfs and from a copy with one more Debian package
installed (apt-get in the chroot, under qemu-user for an arm64 rootfs). For each system image
format and chunker setting it prints, side by side:

- seeded: compressed bytes of the new image's chunks that the old image lacks (what a device
  running the old release downloads);
- full: compressed bytes of all the new image's chunks (a device with an empty seed);
- patch: ``zstd -12 --long --patch-from=old new`` (the best a binary delta of the pair can do);
- whole: ``zstd -12 --long`` of the new image as one file.

Run as root on a rootfs from ``fleet-image build`` (it needs network for apt):

    python bench/bench_delta.py --rootfs out/rootfs [--package htop]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from fleetcore.release import Chunker, ImageName, chunk_path
from image import chunkstore, filesystems
from image.backends import chroot
from image.filesystems import SystemSpec

EPOCH = 1700000000
SPECS = ["erofs:lz4hc", "erofs:none", "squashfs:zstd"]
# Every chunker is measured on the first spec; the others use the default chunker only.
DEFAULT_CHUNKER = "16k/64k/256k"
CHUNKERS = {
    "16k/64k/256k": Chunker(min_size=16 * 1024, avg_size=64 * 1024, max_size=256 * 1024),
    "4k/16k/64k": Chunker(min_size=4 * 1024, avg_size=16 * 1024, max_size=64 * 1024),
    "64k/256k/1m": Chunker(min_size=64 * 1024, avg_size=256 * 1024, max_size=1024 * 1024),
}
ZSTD_LEVEL = 12  # the chunk store's level; the zstd baselines use it too, for a fair comparison


def install_package(rootfs: Path, package: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "INITRD": "No"}
    shutil.copyfile("/etc/resolv.conf", rootfs / "etc/resolv.conf.bench")
    resolv = rootfs / "etc/resolv.conf"
    saved = resolv.readlink() if resolv.is_symlink() else None
    resolv.unlink(missing_ok=True)
    (rootfs / "etc/resolv.conf.bench").rename(resolv)
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    try:
        with chroot.mounted(rootfs):
            for argv in (
                ["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "--no-install-recommends", package],
                ["apt-get", "clean"],
            ):
                subprocess.run(
                    ["chroot", rootfs, *argv], check=True, env=env, stdout=subprocess.DEVNULL
                )
    finally:
        policy.unlink()
        resolv.unlink()
        if saved is not None:
            resolv.symlink_to(saved)
        shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
        (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)


def compressed_sizes(store: Path, shas: set[str]) -> int:
    return sum((store / chunk_path(sha)).stat().st_size for sha in shas)


def zstd_size(args: list[str], src: Path, out: Path) -> int:
    subprocess.run(["zstd", "-q", "-f", "-T2", *args, src, "-o", out], check=True)
    return out.stat().st_size


def mib(n: int) -> str:
    return f"{n / 2**20:8.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rootfs", type=Path, required=True, help="a fleet rootfs (fleet-image build)"
    )
    parser.add_argument(
        "--new", type=Path, help="compare with this rootfs instead of installing --package"
    )
    parser.add_argument("--package", default="htop")
    parser.add_argument("--specs", default=",".join(SPECS))
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temp dir)")
    parser.add_argument(
        "--repeat", type=int, default=1, help="mkfs runs per image; the median time is printed"
    )
    parser.add_argument(
        "--first-chunkers",
        default=",".join(CHUNKERS),
        help="chunker settings measured on the first spec (the others use the default)",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-delta-", dir=args.work))
    try:
        new_root = args.new
        if new_root is None:
            new_root = work / "rootfs-new"
            print(f"copying {args.rootfs} and installing {args.package} ...", flush=True)
            subprocess.run(["cp", "-a", "--reflink=auto", args.rootfs, new_root], check=True)
            install_package(new_root, args.package)
        change = (
            f"+{args.package}" if args.new is None else f"{args.rootfs.name} -> {args.new.name}"
        )
        print(f"\none-package change: {change}; chunk store zstd level {ZSTD_LEVEL}\n")
        header = (
            f"{'system image':<14} {'chunker':<13} {'image MiB':>9} {'seeded MiB':>10} "
            f"{'full MiB':>9} {'seeded/full':>11} {'patch MiB':>9} {'whole MiB':>9} "
            f"{'mkfs s':>6} {'load':>5}"
        )
        print(header)
        print("-" * len(header))
        for text in args.specs.split(","):
            spec = SystemSpec.parse(text)
            images = {}
            times = []
            for _ in range(args.repeat):
                for name, root in (("old", args.rootfs), ("new", new_root)):
                    images[name] = work / f"{name}.{spec.format.value}"
                    start = time.monotonic()
                    filesystems.make_system(
                        images[name], src=root, spec=spec, epoch=EPOCH,
                        fs_uuid="11111111-2222-4333-8444-555555555555", exclude=["boot/firmware"],
                    )  # fmt: skip
                    times.append(time.monotonic() - start)
            mkfs = statistics.median(times)
            load = os.getloadavg()[0]
            patch = zstd_size(
                [f"-{ZSTD_LEVEL}", "--long=30", f"--patch-from={images['old']}"],
                images["new"],
                work / "patch.zst",
            )
            whole = zstd_size([f"-{ZSTD_LEVEL}", "--long=30"], images["new"], work / "whole.zst")
            first = text == args.specs.split(",")[0]
            wanted = args.first_chunkers.split(",") if first else [DEFAULT_CHUNKER]
            chunkers = {label: CHUNKERS[label] for label in wanted}
            for label, chunker in chunkers.items():
                store = work / f"store-{spec.format.value}-{label.replace('/', '_')}"
                old = chunkstore.cut(
                    images["old"], ImageName.SYSTEM, store, chunker=chunker, level=ZSTD_LEVEL
                )
                new = chunkstore.cut(
                    images["new"], ImageName.SYSTEM, store, chunker=chunker, level=ZSTD_LEVEL
                )
                new_shas = {c.sha256 for c in new.chunks}
                seeded = compressed_sizes(store, new_shas - {c.sha256 for c in old.chunks})
                full = compressed_sizes(store, new_shas)
                sizes = f"{mib(new.image_size):>9} {mib(seeded):>10} {mib(full):>9}"
                print(
                    f"{text:<14} {label:<13} {sizes} {seeded / full:>10.1%} "
                    f"{mib(patch):>9} {mib(whole):>9} {mkfs:>6.1f} {load:>5.1f}",
                    flush=True,
                )
                shutil.rmtree(store)
            for image in images.values():
                image.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
