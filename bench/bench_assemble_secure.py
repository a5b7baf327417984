"""Time to assemble a secure-boot image (``--boot-key``) beside an unsigned one, same run.

Both are built from the same rootfs, alternately, ``--repeat`` times each; it prints the
median wall time of each, the ratio, and what the secure image adds (boot.img size per slot,
slot B's patch bytes in the manifest). Without ``--rootfs`` it makes a synthetic rootfs whose
boot folder has the debootstrap image's sizes (a 32 MiB kernel, a 20 MiB initramfs, 22 MB of
firmware, device trees) and a 200 MB system of text-like files.

    python bench/bench_assemble_secure.py [--rootfs out/rootfs] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from fleetcore.release import ImageName
from fleetcore.version import Version
from image import assemble, filesystems, release
from image.filesystems import SystemSpec
from image.layout import Sizes

KEY = Path(__file__).resolve().parents[1] / "tests/image/fixtures/bootkeys/customer.pem"
EPOCH = 1700000000
MIB = 2**20


def synthetic_rootfs(root: Path) -> Path:
    rng = random.Random(17)
    firmware = root / "boot/firmware"
    (firmware / "overlays").mkdir(parents=True)
    sizes = {"vmlinuz": 32 * MIB, "initrd.img": 20 * MIB, "start4.elf": 2_249_280}
    sizes |= {"start4x.elf": 2_996_680, "start4db.elf": 3_744_808, "start4cd.elf": 803_964}
    sizes |= {"fixup4.dat": 5_399, "fixup4x.dat": 8_379, "fixup4db.dat": 8_379}
    for dtb in ("bcm2711-rpi-4-b", "bcm2711-rpi-400", "bcm2711-rpi-cm4"):
        sizes[f"{dtb}.dtb"] = 56_000
    for name, size in sizes.items():
        (firmware / name).write_bytes(rng.randbytes(size))
    for i in range(150):
        (firmware / f"overlays/o{i}.dtbo").write_bytes(rng.randbytes(3000))
    (firmware / "config.txt").write_text(
        "arm_64bit=1\nkernel=vmlinuz\ninitramfs initrd.img followkernel\n"
    )
    (firmware / "cmdline.txt").write_text("console=serial0,115200 console=tty1\n")
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    for i in range(200):
        folder = root / f"usr/lib/pkg{i % 20}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}").write_text(" ".join(rng.choice(words) for _ in range(170_000)))
    return root


def build(rootfs: Path, out: Path, key: Path | None) -> float:
    started = time.perf_counter()
    assemble.assemble(
        assemble.Request(
            rootfs=rootfs,
            out=out,
            version=Version("1.0.0"),
            hardware=None,
            sizes=Sizes(config=32, boot=256, system=1536, data=256),
            system=SystemSpec(),
            epoch=EPOCH,
            boot_key=key,
        )
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rootfs", type=Path, help="a fleet rootfs (default: synthetic)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-secure-") as tmp:
        work = Path(tmp)
        rootfs = args.rootfs or synthetic_rootfs(work / "rootfs")
        boot = sum(p.stat().st_size for p in (rootfs / "boot/firmware").rglob("*") if p.is_file())
        print(f"rootfs {rootfs}: boot files {boot / MIB:.1f} MiB; load {os.getloadavg()[0]:.1f}")
        times: dict[str, list[float]] = {"unsigned": [], "secure": []}
        for i in range(args.repeat):
            for mode, key in (("unsigned", None), ("secure", KEY)):
                out = work / f"{mode}-{i}"
                times[mode].append(build(rootfs, out, key))
                if i < args.repeat - 1:
                    shutil.rmtree(out)
        unsigned, secure = (statistics.median(times[m]) for m in ("unsigned", "secure"))
        last = args.repeat - 1
        for mode in times:
            runs = ", ".join(f"{t:.2f}" for t in times[mode])
            print(f"{mode:>9}: median {statistics.median(times[mode]):.2f} s  ({runs})")
        extra = secure - unsigned
        print(f"    ratio: secure / unsigned = {secure / unsigned:.2f}x (+{extra:.2f} s)")
        manifest = release.read_manifest(work / f"secure-{last}/release")
        _sha, patches = manifest.written(ImageName.BOOT, "b")
        size = sum(len(p.data) // 2 for p in patches)
        image_mib = filesystems.vfat_size_for(rootfs / "boot/firmware") // MIB
        print(f"  boot.img: {image_mib} MiB per slot; slot b: {len(patches)} patches, {size} bytes")
        print(f"    load: {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
