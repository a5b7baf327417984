"""Install time of a secure release (``--boot-key``: signed boot.img, verity tree) beside an
unsigned one, from the same rootfs, in the same run.

Each release is one ``fleet-image assemble`` output (``--secure OUT`` and ``--unsigned OUT``,
assembled from the same rootfs). Its chunk store is served over local HTTP (nginx when
installed, as in bench_install.py) and installed, unseeded, into slot B of a copy of its own
disk image by the updater's slot writer, followed by every check the engine runs before a
trial: the read-back against the signed image hashes (``install.verify_slot``), which hashes
boot.img for boot.sig's digest as the boot partition streams past, verifies boot.sig's RSA
signature against the trusted boot key (``--boot-pubkey``, as a secure image lists it) and checks
the system slot's verity tree in the same read (none of these applies to the unsigned release).
Alternating, ``--runs`` times each; medians and the ratio.
Target: secure <= 1.15x unsigned (issue 17).

    python bench/bench_install_secure.py --secure OUT1 --unsigned OUT2 [--runs 3] \
        [--boot-pubkey PUB.pem]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_install import start_server  # noqa: E402

CHILD = r"""
import json, sys, time
from pathlib import Path
from fleetcore.layout import Slot
from fleetcore.release import ImageName, load_manifest
from fleetcore.version import Version
from updater.chunkindex import load_compact
from updater.chunks import HttpChunkSource
from updater.config import TransferConfig
from updater.disk import BootDisk
from updater.install import ProgressFile, SlotWriter, verify_slot
from fleetcore import bootsig
from updater.bootkeys import BootTrust
from updater.paths import Roots

disk_path, url, release, work, pubkey = sys.argv[1:6]
trust = None
if pubkey:
    key = bootsig.load_public_key(Path(pubkey).read_bytes())
    trust = BootTrust({bootsig.fingerprint(key): key})
disk = BootDisk.open(Path(disk_path))
manifest = load_manifest((Path(release) / "manifest.json").read_bytes())
compact = {i: load_compact((Path(release) / f"{i.value}.index.json").read_bytes())
           for i in ImageName}
source = HttpChunkSource(url, TransferConfig())
progress = ProgressFile(Path(work) / "progress.json")
progress.clear()
writer = SlotWriter(disk=disk, roots=Roots(root=Path(work)), active=Slot.A, target=Slot.B,
                    source=source, seed=None, config=TransferConfig(), progress=progress,
                    patches={i: manifest.written(i, "b")[1] for i in ImageName})
start = time.perf_counter()
writer.install(Version("1.0.0"), compact)
written = time.perf_counter()
# The read-back: the signed hashes, boot.img against boot.sig and the verity tree, one read.
checks = verify_slot(disk, Slot.B, manifest, trust)
done = time.perf_counter()
print(json.dumps({"write_s": written - start, "read_back_s": done - written,
                  "total_s": done - start, "fetched_bytes": source.fetched_bytes,
                  "signed": checks.boot_img_sha256 is not None,
                  "fused": checks.boot_img_fused, "verity": checks.verity_root is not None,
                  "key": checks.boot_key is not None}))
"""


def install_once(out: Path, url: str, work: Path, pubkey: Path | None) -> dict[str, float]:
    disk = work / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(out / "disk.img"), str(disk)], check=True)
    state = work / "state"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir()
    answer = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(disk),
            url,
            str(out / "release"),
            str(state),
            "" if pubkey is None else str(pubkey),
        ],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        check=True,
    )
    disk.unlink()
    result: dict[str, float] = json.loads(answer.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--secure", type=Path, required=True, help="assemble --boot-key output")
    parser.add_argument("--unsigned", type=Path, required=True, help="plain assemble output")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--boot-pubkey",
        type=Path,
        default=ROOT / "tests" / "image" / "fixtures" / "bootkeys" / "customer.pub.pem",
        help="the public key the secure release's boot.sig is checked against",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-install-secure-"))
    print(f"load average at the start: {os.getloadavg()[0]:.1f}")
    servers, results = [], {}
    try:
        urls = {}
        for name, out in (("unsigned", args.unsigned), ("secure", args.secure)):
            folder = work / name
            folder.mkdir()
            server, base, server_name = start_server(out / "release", folder)
            servers.append(server)
            urls[name] = base
            results[name] = []
        print(f"server: {server_name}")
        for run in range(args.runs):
            order = ("unsigned", "secure") if run % 2 == 0 else ("secure", "unsigned")
            for name in order:
                out = args.secure if name == "secure" else args.unsigned
                pubkey = args.boot_pubkey if name == "secure" else None
                results[name].append(install_once(out, urls[name], work, pubkey))
    finally:
        for server in servers:
            server.terminate()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)
    for name in ("unsigned", "secure"):
        runs = results[name]
        last = runs[-1]
        each = ", ".join(f"{r['total_s']:.2f}" for r in runs)
        print(
            f"{name:>8}: median {statistics.median(r['total_s'] for r in runs):6.2f} s "
            f"(runs {each}); last run: write "
            f"{last['write_s']:.2f} s, read-back with its checks {last['read_back_s']:.2f} s; "
            f"fetched {last['fetched_bytes'] / 2**20:.0f} MiB; boot.sig checked {last['signed']} "
            f"(in the read-back {last['fused']}, its key {last['key']}), verity checked "
            f"{last['verity']}"
        )
    secure = statistics.median(r["total_s"] for r in results["secure"])
    unsigned = statistics.median(r["total_s"] for r in results["unsigned"])
    print(f"ratio of the medians: secure / unsigned = {secure / unsigned:.2f}x (target <= 1.15x)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
