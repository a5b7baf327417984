"""Read throughput of the root through dm-verity beside the same squashfs read raw, measured
inside the QEMU guest (the build host's kernel has no device-mapper; bench_verity.py skips it).

It assembles ``--rootfs`` with ``--verity`` (plus a small program, ``READER``), appends
``init=`` to boot_a's ``cmdline.txt`` and boots the card under the harness's simulated Pi.
The real initramfs maps system_a through dm-verity as usual (with the arm64 SHA-256 driver it
loaded, printed) and hands over to the reader instead of systemd, which reads the
filesystem's bytes ``--rounds`` times each way, alternately (``/dev/mapper/fleet-root`` and
system_a's own partition over the same byte count), dropping the page cache before every
read, prints one line per read and powers the guest off. Target: verity >= 0.85x of the raw
read (issue 17).

Two boots, each with its own baseline:
- the emulator unbounded: the card is a host file in the page cache, so TCG's emulated
  SHA-256 is the bound (a lower bound for a Pi's CPU, not its figure);
- the card model: QEMU's drive throttling limits reads to ``--card-mibs`` MiB/s (default 45,
  a good SD card in a Pi 4, whose interface tops out near 50 MB/s; a Pi 5's SDR104 reaches
  about 90), the bound a Pi's root actually reads against.

    python bench/bench_verity_guest.py --rootfs /path/to/rootfs [--rounds 3] [--card-mibs 45]
        [--without-sha2-ce]

``--without-sha2-ce`` boots with ``module_blacklist=sha2_ce``, so the initramfs maps the root
with ``sha256-arm64``, the driver a Pi 4 (Cortex-A72 without the SHA-2 instructions) uses.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "qemu-tests"))

from harness.board import Deadlines, SimulatedPi  # noqa: E402
from harness.disk import fat_volume  # noqa: E402
from harness.qemu import MachineSpec  # noqa: E402

from fleetcore.run import run  # noqa: E402
from fleetcore.verity import from_cmdline  # noqa: E402

READER_PATH = "opt/bench/verity-read"
DONE = "verity-read: done"
# PID 1 of the bench boot. The initramfs mapped the root and moved /dev onto it.
READER = """#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
blocks=$(sed -n 's/.*fleet\\.verity=[^:]*:[^:]*:[^:]*:\\([0-9]*\\):.*/\\1/p' /proc/cmdline)
bytes=$((blocks * 4096))
raw=$(readlink -f /dev/disk/by-partlabel/system_a 2>/dev/null)
[ -b "$raw" ] || raw=/dev/vda4
for round in $(seq ROUNDS); do
    for dev in /dev/mapper/fleet-root "$raw"; do
        sync
        echo 3 > /proc/sys/vm/drop_caches
        start=$(date +%s.%N)
        dd if="$dev" of=/dev/null bs=1M count="$bytes" iflag=count_bytes 2>/dev/null
        end=$(date +%s.%N)
        echo "verity-read: $round $dev $bytes $start $end"
    done
done
echo "DONE"
echo 1 > /proc/sys/kernel/sysrq
echo o > /proc/sysrq-trigger
sleep 60
"""


def assemble(rootfs: Path, work: Path, rounds: int) -> Path:
    copy = work / "rootfs"
    run(["cp", "-a", "--reflink=auto", rootfs, copy])
    reader = copy / READER_PATH
    reader.parent.mkdir(parents=True, exist_ok=True)
    reader.write_text(READER.replace("ROUNDS", str(rounds)).replace("DONE", DONE))
    reader.chmod(0o755)
    out = work / "out"
    started = time.monotonic()
    fleet_image = Path(sys.executable).with_name("fleet-image")
    run([fleet_image, "assemble", "--rootfs", copy, "--out", out, "--version", "1.0.0",
         "--verity"], timeout=1800)  # fmt: skip
    print(f"assemble --verity: {time.monotonic() - started:.0f} s")
    shutil.rmtree(copy)
    return out / "disk.img"


def boot(card: Path, work: Path, spec: MachineSpec) -> str:
    board = SimulatedPi(
        card,
        work / "board",
        healthy_marker=DONE,
        deadlines=Deadlines(watchdog=1200, session=1500),
        spec=spec,
    )
    record = board.boot()
    print(record.line())
    return board.console(record)


def reader_boot(card: Path, without_sha2_ce: bool) -> None:
    boot_a = fat_volume(card, label="boot_a")
    cmdline = (boot_a.read("cmdline.txt") or b"").decode().strip()
    params = from_cmdline(cmdline)
    if params is None:
        raise SystemExit("boot_a's cmdline.txt names no verity root")
    extra = " module_blacklist=sha2_ce" if without_sha2_ce else ""
    boot_a.write("cmdline.txt", f"{cmdline}{extra} init=/{READER_PATH}\n".encode())
    print(f"filesystem {params.data_blocks * 4096} bytes, tree to {params.image_size}")


def report(name: str, console: str) -> float:
    """Prints one boot's reads; the ratio of the medians, verity / raw."""
    reads: dict[str, list[float]] = {"verity": [], "raw": []}
    size = 0
    for line in console.splitlines():
        if "verity-read: " not in line or line.strip().endswith(DONE):
            continue
        fields = line.split("verity-read: ", 1)[1].split()
        if len(fields) != 5:
            continue
        _round, dev, count, start, end = fields
        size = int(count)
        reads["verity" if dev == "/dev/mapper/fleet-root" else "raw"].append(
            float(end) - float(start)
        )
    if not reads["verity"] or len(reads["verity"]) != len(reads["raw"]):
        raise SystemExit(f"the guest printed no complete set of reads:\n{console[-3000:]}")
    mib = size / 2**20
    raw, verity = statistics.median(reads["raw"]), statistics.median(reads["verity"])
    driver = re.search(r"fleet-verity: SHA-256 by (\S+)", console)
    print(f"{name}:")
    print(f"  raw squashfs read: {mib / raw:7.1f} MiB/s (baseline; runs {_secs(reads['raw'])})")
    print(f"  through dm-verity: {mib / verity:7.1f} MiB/s (runs {_secs(reads['verity'])})")
    print(f"  the initramfs's SHA-256: {driver.group(1) if driver else 'not printed'}")
    print(f"  ratio of the medians: verity / raw = {raw / verity:.2f}x (target >= 0.85x)")
    return raw / verity


def _secs(times: list[float]) -> str:
    return ", ".join(f"{t:.2f} s" for t in times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rootfs", type=Path, required=True, help="a built rootfs to assemble")
    parser.add_argument("--rounds", type=int, default=3, help="reads each way (median)")
    parser.add_argument("--card-mibs", type=float, default=45.0, help="the card model's MiB/s")
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument(
        "--without-sha2-ce",
        action="store_true",
        help="keep sha2_ce from loading: hash with sha256-arm64, a Pi 4's driver (its A72 "
        "has no SHA-2 instructions)",
    )
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-verity-guest-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"load average at the start: {os.getloadavg()[0]:.1f}")
    card = assemble(args.rootfs, work, args.rounds)
    reader_boot(card, args.without_sha2_ce)
    unbounded = boot(card, work / "unbounded", MachineSpec())
    card_bps = int(args.card_mibs * 2**20)
    modelled = boot(card, work / "card", MachineSpec(card_read_bps=card_bps))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    report("the emulator unbounded (TCG's SHA-256 is the bound)", unbounded)
    report(f"the card model ({args.card_mibs:g} MiB/s reads, the bound on a Pi)", modelled)


if __name__ == "__main__":
    main()
