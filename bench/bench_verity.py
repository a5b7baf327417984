"""dm-verity's costs on a real system image (ADR 0071), each beside its baseline from this run.

Input: a disk image made by ``fleet-image assemble --verity`` (its system_a and boot_a). Prints

- the hash tree's size as a share of the filesystem (target: at most 1%);
- read throughput of the root through dm-verity against the same squashfs without it: every
  file of the mounted filesystem read once (loop devices, page cache dropped before each run,
  median of N; target: at least 0.85x). This needs a kernel with device-mapper and dm-verity;
  without one it says so and skips the figure;
- what the updater's check before a trial costs: ``veritysetup verify`` and the pure-Python
  tree check (``fleetcore.verity``) against a plain sequential read of the same bytes.

Run as root: ``.venv/bin/python bench/bench_verity.py --disk OUT/disk.img``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from fleetcore.layout import Slot
from fleetcore.verity import BLOCK, VerityParams, check_tree
from updater.disk import BootDisk, PartitionIO
from updater.verity import slot_params

_PIECE = 1 << 20


def _drop_caches(path: Path | None = None) -> None:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:  # not root, or a container: at least the file's own pages
        if path is not None:
            with path.open("rb") as handle:
                os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def _median(runs: int, prepare: Callable[[], None], work: Callable[[], None]) -> float:
    times = []
    for _ in range(runs):
        prepare()
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _extract(disk: Path, out: Path) -> VerityParams:
    boot = BootDisk.open(disk)
    params = slot_params(boot, Slot.A)
    if params is None:
        raise SystemExit(f"{disk}: boot_a's cmdline.txt names no verity root (assemble --verity)")
    system = boot.slot_partition("system", Slot.A)
    with PartitionIO(system, writable=False) as reader, out.open("wb") as handle:
        for pos in range(0, params.image_size, _PIECE):
            handle.write(reader.read(pos, min(_PIECE, params.image_size - pos)))
    return params


def _read_file(path: Path) -> None:
    with path.open("rb", buffering=0) as handle:
        while handle.read(_PIECE):
            pass


def _read_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name)
            if path.is_file() and not path.is_symlink():
                _read_file(path)


@contextlib.contextmanager
def _loop(image: Path) -> Iterator[str]:
    loop = subprocess.run(
        ["losetup", "--find", "--show", "--read-only", str(image)],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    try:
        yield loop
    finally:
        subprocess.run(["losetup", "--detach", loop], check=False)


@contextlib.contextmanager
def _mounted(device: str, where: Path) -> Iterator[Path]:
    subprocess.run(["mount", "-o", "ro", device, str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


@contextlib.contextmanager
def _verity(loop: str, params: VerityParams) -> Iterator[str]:
    name = f"bench-verity-{os.getpid()}"
    subprocess.run(
        [
            "veritysetup", "open", "--no-superblock", f"--data-blocks={params.data_blocks}",
            f"--hash-offset={params.hash_offset}", f"--salt={params.salt}", loop, name, loop,
            params.root_hash,
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield f"/dev/mapper/{name}"
    finally:
        subprocess.run(["veritysetup", "close", name], check=False)


def _kernel_read(image: Path, params: VerityParams, runs: int, scratch: Path) -> None:
    size_mib = params.hash_offset / (1 << 20)
    mnt = scratch / "mnt"
    mnt.mkdir()
    with _loop(image) as loop:
        try:
            with _verity(loop, params):
                pass
        except subprocess.CalledProcessError as err:
            reason = (err.stderr or b"").decode().strip().splitlines()[:1]
            print(f"read through dm-verity: skipped, this kernel cannot map it ({reason})")
            return
        with _mounted(loop, mnt):
            plain = _median(runs, _drop_caches, lambda: _read_tree(mnt))
        with _verity(loop, params) as mapped, _mounted(mapped, mnt):
            verified = _median(runs, _drop_caches, lambda: _read_tree(mnt))
    print(f"read every file, squashfs alone:       {size_mib / plain:8.1f} MiB/s (baseline)")
    print(f"read every file, through dm-verity:    {size_mib / verified:8.1f} MiB/s")
    print(f"ratio dm-verity / plain: {plain / verified:.2f}x (target >= 0.85x)")


def _updater_check(image: Path, params: VerityParams, runs: int) -> None:
    size_mib = params.image_size / (1 << 20)

    def plain() -> None:
        _read_file(image)

    def tool() -> None:
        subprocess.run(
            [
                "veritysetup", "verify", "--no-superblock", f"--data-blocks={params.data_blocks}",
                f"--hash-offset={params.hash_offset}", f"--salt={params.salt}", str(image),
                str(image), params.root_hash,
            ],
            check=True, capture_output=True,
        )  # fmt: skip

    def python() -> None:
        with image.open("rb") as handle:
            check_tree(lambda pos, length: os.pread(handle.fileno(), length, pos), params)

    drop = lambda: _drop_caches(image)  # noqa: E731
    baseline = _median(runs, drop, plain)
    print(f"sequential read of data + tree:        {size_mib / baseline:8.1f} MiB/s (baseline)")
    if shutil.which("veritysetup"):
        took = _median(runs, drop, tool)
        print(
            f"veritysetup verify:                    {size_mib / took:8.1f} MiB/s "
            f"({took / baseline:.2f}x the read's time)"
        )
    took = _median(runs, drop, python)
    print(
        f"pure-Python tree check:                {size_mib / took:8.1f} MiB/s "
        f"({took / baseline:.2f}x the read's time)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--disk", type=Path, required=True, help="disk.img of assemble --verity")
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-verity-") as scratch:
        image = Path(scratch) / "system.img"
        params = _extract(args.disk, image)
        tree = params.hash_blocks * BLOCK
        print(f"system image {args.disk}: filesystem {params.hash_offset} bytes")
        print(
            f"hash tree: {tree} bytes = {100 * tree / params.hash_offset:.3f}% of the filesystem "
            "(target <= 1%)"
        )
        _kernel_read(image, params, args.runs, Path(scratch))
        _updater_check(image, params, args.runs)


if __name__ == "__main__":
    main()
