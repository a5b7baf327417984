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

With ``--kinds``, it measures chunk deltas (``image.delta``, ADR 0073) on the real update
kinds of ``bench/rootfs_variants.py`` (one package, a security update, a kernel update, a
monthly update), each built once and cached under ``--cache``, in the release's system format
(squashfs, zstd level 6):
for each kind, seeded plain chunks, seeded with deltas (diffs plus the delta list itself),
``zstd --patch-from``, the whole new image compressed, and ratios; the last figures go to
``bench/results/bench_delta.txt``:

    python bench/bench_delta.py --rootfs BASE --kinds [--neighbours 0,1,2]
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

import rootfs_variants

from fleetcore.delta import delta_list_file
from fleetcore.release import Chunker, ChunkIndex, ImageName, chunk_path
from fleetcore.version import Version
from image import chunkstore, delta, filesystems
from image.filesystems import SystemSpec

RESULTS = Path(__file__).resolve().parent / "results" / "bench_delta.txt"
# Rugix's benchmark of 50 reproducible Debian images, a monthly update as a fraction of the
# compressed full image: chunk-based deltas and xdelta static deltas.
RUGIX = {"chunk deltas": 0.28, "xdelta": 0.14}

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
    rootfs_variants.with_network(
        rootfs, lambda root: rootfs_variants.install(root, package), security_sources=False
    )


def compressed_sizes(store: Path, shas: set[str]) -> int:
    return sum((store / chunk_path(sha)).stat().st_size for sha in shas)


def zstd_size(args: list[str], src: Path, out: Path) -> int:
    subprocess.run(["zstd", "-q", "-f", "-T2", *args, src, "-o", out], check=True)
    return out.stat().st_size


def mib(n: int) -> str:
    return f"{n / 2**20:8.1f}"


def make_image(root: Path, out: Path, spec: SystemSpec) -> Path:
    """The system image of ``root`` (kept: building it is the slow part of a run)."""
    if not out.exists():
        tmp = out.with_name(f".{out.name}.tmp")
        filesystems.make_system(
            tmp, src=root, spec=spec, epoch=EPOCH,
            fs_uuid="11111111-2222-4333-8444-555555555555", exclude=["boot/firmware"],
        )  # fmt: skip
        tmp.replace(out)
    return out


def seeded_sizes(
    store: Path, old: ChunkIndex, new: ChunkIndex, neighbours: int
) -> tuple[int, int, int]:
    """Bytes a seeded device downloads: plain chunks, with deltas, and how many deltas."""
    have = {c.sha256 for c in old.chunks}
    missing = {c.sha256 for c in new.chunks} - have
    plain = compressed_sizes(store, missing)
    shutil.rmtree(store / "deltas", ignore_errors=True)
    shutil.rmtree(store / "delta-lists", ignore_errors=True)
    made = delta.make(
        store, store, version=Version("2.0.0"), from_version=Version("1.0.0"),
        new={ImageName.SYSTEM: new}, old={ImageName.SYSTEM: old},
        level=ZSTD_LEVEL, neighbours=neighbours,
    )  # fmt: skip
    by_target = made.by_target()
    with_deltas = (store / delta_list_file("1.0.0")).stat().st_size
    for sha in missing:
        found = by_target.get(sha)
        with_deltas += found.delta_size if found else (store / chunk_path(sha)).stat().st_size
    return plain, with_deltas, len(by_target)


def run_kinds(args: argparse.Namespace) -> None:
    spec = SystemSpec()  # the release's: squashfs, zstd level 6 (ADR 0010)
    cache: Path = args.cache
    images = cache / "images"
    images.mkdir(parents=True, exist_ok=True)
    kinds = args.kinds.split(",")
    neighbours = [int(n) for n in args.neighbours.split(",")]
    old_image = make_image(args.rootfs, images / f"base.{spec.format.value}", spec)
    work = Path(tempfile.mkdtemp(prefix="bench-delta-", dir=args.work))
    lines = []
    header = (
        f"{'kind':<12} {'nb':>2} {'plain MiB':>9} {'delta MiB':>9} {'deltas':>6} "
        f"{'patch MiB':>9} {'whole MiB':>9} {'plain/patch':>11} {'delta/patch':>11} "
        f"{'delta/whole':>11} {'s':>5}"
    )
    print(f"system image {spec.format.value}; chunk store and zstd level {ZSTD_LEVEL}\n")
    print(header)
    print("-" * len(header))
    try:
        store = work / "store"
        old = chunkstore.cut(old_image, ImageName.SYSTEM, store, level=ZSTD_LEVEL)
        for kind in kinds:
            root = rootfs_variants.build(args.rootfs, kind, cache)
            new_image = make_image(root, images / f"{kind}.{spec.format.value}", spec)
            new = chunkstore.cut(new_image, ImageName.SYSTEM, store, level=ZSTD_LEVEL)
            patch = zstd_size(
                [f"-{ZSTD_LEVEL}", "--long=30", f"--patch-from={old_image}"],
                new_image,
                work / "patch.zst",
            )
            whole = zstd_size([f"-{ZSTD_LEVEL}", "--long=30"], new_image, work / "whole.zst")
            chosen = None
            for count in neighbours:
                start = time.monotonic()
                plain, with_deltas, made = seeded_sizes(store, old, new, count)
                took = time.monotonic() - start
                print(
                    f"{kind:<12} {count:>2} {mib(plain):>9} {mib(with_deltas):>9} {made:>6} "
                    f"{mib(patch):>9} {mib(whole):>9} {plain / patch:>10.2f}x "
                    f"{with_deltas / patch:>10.2f}x {with_deltas / whole:>10.3f}x {took:>5.1f}",
                    flush=True,
                )
                if count == delta.DEFAULT_NEIGHBOURS or chosen is None:
                    chosen = (plain, with_deltas)
            assert chosen is not None
            plain, with_deltas = chosen
            change = (cache / kind / "change.txt").read_text().strip()
            lines.append(
                f"{kind}: seeded {with_deltas / 2**20:.2f} MiB, patch-from "
                f"{patch / 2**20:.2f} MiB, patch-from ratio {with_deltas / patch:.2f}x "
                f"(plain chunks {plain / 2**20:.2f} MiB, {plain / patch:.2f}x; whole image "
                f"{whole / 2**20:.1f} MiB, seeded/whole {with_deltas / whole:.3f}x) [{change}]"
            )
            if kind == "monthly":
                rugix = ", ".join(f"{k} {v:.2f}x" for k, v in RUGIX.items())
                lines.append(
                    f"monthly as a fraction of the compressed full image: seeded with deltas "
                    f"{with_deltas / whole:.3f}x, plain chunks {plain / whole:.3f}x "
                    f"(Rugix: {rugix})"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print("\n".join(lines))
    if args.results:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(
            f"# python bench/bench_delta.py --kinds; system image {spec.format.value}, "
            f"zstd level {ZSTD_LEVEL}, FastCDC 16k/64k/256k, {delta.DEFAULT_NEIGHBOURS} "
            "neighbour(s)\n" + "\n".join(lines) + "\n"
        )


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
    parser.add_argument(
        "--kinds",
        nargs="?",
        const=",".join(rootfs_variants.KINDS),
        help="measure chunk deltas on these update kinds (default: all of them)",
    )
    parser.add_argument("--cache", type=Path, default=rootfs_variants.DEFAULT_CACHE)
    parser.add_argument(
        "--neighbours", default="0,1,2", help="old chunks each side of a delta's anchored base"
    )
    parser.add_argument(
        "--no-results", dest="results", action="store_false", help="leave bench/results alone"
    )
    args = parser.parse_args()
    if args.kinds:
        run_kinds(args)
        return

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
