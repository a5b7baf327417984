"""Install throughput, peak memory and seeded download size of the updater's slot writer.

    python bench/bench_install.py [--system-mib 256] [--boot-mib 32] [--runs 3]

Every figure is printed next to a baseline measured in the same run:

- full unseeded install from a local HTTP server (keep-alive, chunk store) against the naive
  ``curl URL | zstd -d | dd`` of one whole-image .zst from the same server into the same kind
  of target (medians of ``--runs``; target ratio >= 0.9);
- the updater's peak RSS (target <= 64 MiB), measured with wait4() on a child process, beside
  the peak RSS of the baseline pipeline's processes;
- bytes downloaded by a seeded update whose system image differs by one "package" (a few
  contiguous MiB), against the bytes of a full download;
- a seeded update that changes a few bytes in many chunks (as relinked libraries do), installed
  with chunk deltas (ADR 0073) and without them in the same run: bytes, time and peak RSS.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fleetcore.net import free_port

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fleetcore.atomic import atomic_write  # noqa: E402
from fleetcore.delta import delta_list_file  # noqa: E402
from fleetcore.release import (  # noqa: E402
    Chunker,
    ImageName,
    dump_index,
    load_index,
)
from fleetcore.version import Version  # noqa: E402
from image import delta  # noqa: E402
from tests.updater.releases import cut  # noqa: E402

# casync's default average; the image builder's choice is recorded in each index.
CHUNKER = Chunker(min_size=16 << 10, avg_size=64 << 10, max_size=256 << 10)

SERVER = r"""
import sys
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
class H(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as nginx does on keep-alive connections
    def log_message(self, *a): pass
httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(H, directory=sys.argv[1]))
print(httpd.server_address[1], flush=True)
httpd.serve_forever()
"""

CHILD = r"""
import json, sys
from pathlib import Path
from fleetcore.release import ImageName
from fleetcore.version import Version
from fleetcore.layout import Slot
from updater.chunkindex import load_compact
from updater.chunks import HttpChunkSource
from updater.config import TransferConfig
from updater.disk import BootDisk, PartitionIO
from updater.deltas import DeltaPlan
from updater.install import ProgressFile, Seed, SlotWriter
from updater.paths import Roots
import hashlib, time

disk_path, url, release, seed_dir, work, deltas_file = sys.argv[1:7]
deltas = None if deltas_file == "-" else DeltaPlan.load(Path(deltas_file).read_bytes())
disk = BootDisk.open(Path(disk_path))
compact = {i: load_compact((Path(release) / f"{i.value}.index.json").read_bytes())
           for i in ImageName}
seed = None
if seed_dir != "-":
    seed_idx = [load_compact((Path(seed_dir) / f"{i.value}.index.json").read_bytes())
                for i in ImageName]
    seed = Seed(disk, Slot.A, seed_idx)
source = HttpChunkSource(url, TransferConfig())
progress = ProgressFile(Path(work) / "progress.json")
progress.clear()
writer = SlotWriter(disk=disk, roots=Roots(root=Path(work)), active=Slot.A, target=Slot.B,
                    source=source, seed=seed, config=TransferConfig(), progress=progress,
                    deltas=deltas)
start = time.perf_counter()
writer.install(Version("2.0.0"), compact)
written = time.perf_counter() - start
for image, index in compact.items():  # the read-back verification, as verify_slot does it
    with PartitionIO(disk.slot_partition(image.value, Slot.B), writable=False) as reader:
        digest, pos = hashlib.sha256(), 0
        while pos < index.image_size:
            n = min(1 << 20, index.image_size - pos)
            digest.update(reader.read(pos, n))
            pos += n
        assert digest.hexdigest() == index.image_sha256
hwm = next(int(line.split()[1]) for line in open("/proc/self/status")
           if line.startswith("VmHWM:"))
print(json.dumps({"write_s": written, "total_s": time.perf_counter() - start, "rss_kib": hwm,
                  "fetched_bytes": source.fetched_bytes,
                  "fetched_chunks": source.fetched_chunks,
                  "seeded_chunks": writer.stats.seeded_chunks,
                  "delta_chunks": writer.stats.delta_chunks}))
"""


def synthetic_image(seed: int, size: int) -> bytes:
    """Compressible like an OS image (about 2:1): random blocks interleaved with text runs."""
    rng = random.Random(seed)
    words = [rng.randbytes(rng.randint(3, 12)) for _ in range(512)]
    out = bytearray()
    while len(out) < size:
        if rng.random() < 0.5:
            out += rng.randbytes(32768)
        else:
            block = bytearray()
            while len(block) < 32768:
                block += rng.choice(words) + b" "
            out += block[:32768]
    return bytes(out[:size])


def make_disk(path: Path, boot_mib: int, system_mib: int) -> dict[str, int]:
    sizes = [
        ("config", 32),
        ("boot_a", boot_mib),
        ("boot_b", boot_mib),
        ("system_a", system_mib),
        ("system_b", system_mib),
        ("data", 16),
    ]
    with path.open("wb") as handle:
        handle.truncate((sum(s for _, s in sizes) + 2) << 20)
    script = "label: gpt\n" + "".join(f"size={s * 2048}, name={n}\n" for n, s in sizes)
    subprocess.run(["sfdisk", "--quiet", str(path)], input=script.encode(), check=True)
    table = json.loads(
        subprocess.run(["sfdisk", "-J", str(path)], capture_output=True, check=True).stdout
    )["partitiontable"]["partitions"]
    return {p["name"]: p["start"] * 512 for p in table}


def write_release(
    out: Path, images: dict[ImageName, bytes], *, delta_from: Path | None = None
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    indexes = {image: cut(data, image, out, CHUNKER) for image, data in images.items()}
    for image, index in indexes.items():
        atomic_write(out / f"{image.value}.index.json", dump_index(index))
    if delta_from is not None:
        old = {i: load_index((delta_from / f"{i.value}.index.json").read_bytes()) for i in indexes}
        delta.make(
            out,
            delta_from,
            version=Version("3.0.0"),
            from_version=Version("1.0.0"),
            new=indexes,
            old=old,
        )


def scattered_edits(data: bytes, count: int, seed: int) -> bytes:
    """``data`` with ``count`` runs of 64 new bytes spread over it."""
    rng = random.Random(seed)
    out = bytearray(data)
    for n in range(count):
        at = (n * len(data)) // count + rng.randrange(4096)
        out[at : at + 64] = rng.randbytes(64)
    return bytes(out)


def child_run(argv: list[str]) -> dict[str, float]:
    """Run the updater in a fresh process; it reports its figures and its own VmHWM."""
    proc = subprocess.run(argv, stdout=subprocess.PIPE, cwd=ROOT, check=True)
    result: dict[str, float] = json.loads(proc.stdout)
    return result


def vm_hwm_kib(pid: int) -> int:
    try:
        with Path(f"/proc/{pid}/status").open() as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0


def naive(url: str, disk: Path, offset: int) -> tuple[float, int]:
    """curl | zstd -d | dd into the same disk image; wall time and the largest process's peak.

    The peak is each process's VmHWM, sampled until it exits (it only grows).
    """
    start = time.perf_counter()
    curl = subprocess.Popen(["curl", "-sf", url], stdout=subprocess.PIPE)
    zstd = subprocess.Popen(["zstd", "-dq"], stdin=curl.stdout, stdout=subprocess.PIPE)
    dd = subprocess.Popen(
        [
            "dd",
            f"of={disk}",
            "bs=1M",
            "oflag=seek_bytes",
            f"seek={offset}",
            "conv=notrunc,fsync",
            "status=none",
        ],
        stdin=zstd.stdout,
    )
    assert curl.stdout is not None and zstd.stdout is not None
    curl.stdout.close()
    zstd.stdout.close()
    peaks = dict.fromkeys((curl.pid, zstd.pid, dd.pid), 0)
    procs = (curl, zstd, dd)
    while any(p.poll() is None for p in procs):
        for p in procs:
            if p.returncode is None:
                peaks[p.pid] = max(peaks[p.pid], vm_hwm_kib(p.pid))
        time.sleep(0.005)
    if any(p.returncode for p in procs):
        raise SystemExit("naive pipeline failed")
    return time.perf_counter() - start, max(peaks.values())


NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 100000;
    client_body_temp_path {work}/nginx-body;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


def start_server(root: Path, work: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """nginx when installed (what serves the chunk store in production), else http.server."""
    nginx = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if nginx:
        port = free_port()
        conf = work / "nginx.conf"
        conf.write_text(NGINX_CONF.format(work=work, port=port, root=root))
        proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(work)])
        for _ in range(200):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return proc, f"http://127.0.0.1:{port}", "nginx"
            time.sleep(0.02)
        raise SystemExit("nginx did not start")
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(root)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}", "python http.server"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--system-mib", type=int, default=256)
    ap.add_argument("--boot-mib", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--edits", type=int, default=400, help="scattered edits of the delta update")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-install-"))
    serve = work / "serve"
    v1 = {
        ImageName.BOOT: synthetic_image(1, args.boot_mib << 20),
        ImageName.SYSTEM: synthetic_image(2, args.system_mib << 20),
    }
    package = synthetic_image(3, 3 << 20)
    at = len(v1[ImageName.SYSTEM]) // 3
    v2 = {
        ImageName.BOOT: v1[ImageName.BOOT],
        ImageName.SYSTEM: v1[ImageName.SYSTEM][:at]
        + package
        + v1[ImageName.SYSTEM][at + len(package) :],
    }
    v3 = {
        ImageName.BOOT: v1[ImageName.BOOT],
        ImageName.SYSTEM: scattered_edits(v1[ImageName.SYSTEM], args.edits, 4),
    }
    print(f"images: boot {args.boot_mib} MiB, system {args.system_mib} MiB; chunking...")
    write_release(serve / "r1", v1)
    write_release(serve / "r2", v2)
    write_release(serve / "r3", v3, delta_from=serve / "r1")
    for image, data in v1.items():
        (serve / f"{image.value}.img").write_bytes(data)
        subprocess.run(
            [
                "zstd",
                "-q",
                "-3",
                "-f",
                str(serve / f"{image.value}.img"),
                "-o",
                str(serve / f"{image.value}.img.zst"),
            ],
            check=True,
        )
    server, base, server_name = start_server(serve, work)
    print(f"server: {server_name} on {base}")
    disk = work / "disk.img"
    offsets = make_disk(disk, args.boot_mib + 1, args.system_mib + 1)
    total = sum(len(d) for d in v1.values())
    child = [sys.executable, "-c", CHILD, str(disk)]
    try:
        ours, ours_verified, theirs, rss = [], [], [], []
        naive_rss = 0
        for run in range(args.runs):
            # Alternate which goes first, so page-cache and writeback state favour neither.
            for contender in ("naive", "ours") if run % 2 == 0 else ("ours", "naive"):
                if contender == "naive":
                    seconds, peak = 0.0, 0
                    for image in ImageName:
                        url = f"{base}/{image.value}.img.zst"
                        s, p = naive(url, disk, offsets[f"{image.value}_b"])
                        seconds, peak = seconds + s, max(peak, p)
                    theirs.append(seconds)
                    naive_rss = max(naive_rss, peak)
                else:
                    stats = child_run(
                        [*child, f"{base}/r1", str(serve / "r1"), "-", str(work), "-"]
                    )
                    ours.append(stats["write_s"])
                    ours_verified.append(stats["total_s"])
                    rss.append(int(stats["rss_kib"]))
            print(f"  run {run + 1}: updater {ours[-1]:.2f} s, naive {theirs[-1]:.2f} s")
        compressed = sum(f.stat().st_size for f in (serve / "r1" / "chunks").rglob("*.zst"))
        mib = total / (1 << 20)
        t_ours, t_naive = statistics.median(ours), statistics.median(theirs)
        print(
            f"full install, {mib:.0f} MiB ({compressed / (1 << 20):.0f} MiB compressed), "
            f"median of {args.runs}:"
        )
        print(f"  updater (chunks hash-checked, fsynced): {mib / t_ours:7.1f} MiB/s")
        print(
            f"  updater incl. read-back verify:        "
            f"{mib / statistics.median(ours_verified):7.1f} MiB/s"
        )
        print(f"  naive curl | zstd -d | dd:             {mib / t_naive:7.1f} MiB/s")
        print(f"  ratio updater/naive (write):           {t_naive / t_ours:7.2f}x  (target >= 0.9)")
        print(
            f"peak RSS: updater {max(rss) / 1024:.1f} MiB (target <= 64), "
            f"naive pipeline's largest process {naive_rss / 1024:.1f} MiB (curl, zstd, dd)"
        )
        # Seeded one-package update: slot a holds v1, install v2 into slot b.
        subprocess.run(
            [
                "dd",
                f"if={serve / 'system.img'}",
                f"of={disk}",
                "bs=1M",
                "oflag=seek_bytes",
                f"seek={offsets['system_a']}",
                "conv=notrunc",
                "status=none",
            ],
            check=True,
        )
        subprocess.run(
            [
                "dd",
                f"if={serve / 'boot.img'}",
                f"of={disk}",
                "bs=1M",
                "oflag=seek_bytes",
                f"seek={offsets['boot_a']}",
                "conv=notrunc",
                "status=none",
            ],
            check=True,
        )
        stats = child_run(
            [*child, f"{base}/r2", str(serve / "r2"), str(serve / "r1"), str(work), "-"]
        )
        print(
            f"seeded one-package update ({len(package) >> 20} MiB changed): downloaded "
            f"{stats['fetched_bytes'] / (1 << 20):.2f} MiB in {stats['fetched_chunks']:.0f} "
            f"chunks, full download {compressed / (1 << 20):.1f} MiB "
            f"({stats['fetched_bytes'] / compressed:.1%})"
        )
        digest = hashlib.sha256(v2[ImageName.SYSTEM]).hexdigest()
        with disk.open("rb") as handle:
            handle.seek(offsets["system_b"])
            got = hashlib.sha256(handle.read(len(v2[ImageName.SYSTEM]))).hexdigest()
        print(f"seeded result verified: {got == digest}")
        # Seeded update of scattered edits, with and without deltas (same release, same seed).
        r3 = [*child, f"{base}/r3", str(serve / "r3"), str(serve / "r1"), str(work)]
        plain, with_deltas = [], []
        for run in range(args.runs):
            for contender in ("plain", "deltas") if run % 2 == 0 else ("deltas", "plain"):
                if contender == "plain":
                    plain.append(child_run([*r3, "-"]))
                else:
                    listed = serve / "r3" / delta_list_file("1.0.0")
                    with_deltas.append(child_run([*r3, str(listed)]))
        for name, runs in (("plain chunks", plain), ("with deltas", with_deltas)):
            t = statistics.median(r["write_s"] for r in runs)
            print(
                f"seeded {args.edits}-edit update, {name:<12}: downloaded "
                f"{runs[0]['fetched_bytes'] / (1 << 20):6.2f} MiB ({runs[0]['fetched_chunks']:.0f} "
                f"files, {runs[0]['delta_chunks']:.0f} deltas), {mib / t:7.1f} MiB/s written, "
                f"peak RSS {max(r['rss_kib'] for r in runs) / 1024:.1f} MiB"
            )
        t_plain = statistics.median(r["write_s"] for r in plain)
        t_deltas = statistics.median(r["write_s"] for r in with_deltas)
        print(f"  ratio with deltas/plain chunks (time): {t_plain / t_deltas:.2f}x")
    finally:
        server.terminate()
        server.wait()
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
