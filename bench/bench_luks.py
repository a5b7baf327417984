"""What the encrypted data partition costs (ADR 0076), in the QEMU guest, beside a plain /data
booted in the same run.

Three boards, each booting a freshly flashed card of the real debootstrap image once, until
the agent has enrolled with an Overlord on the host:

- plain: ``fleet-image assemble`` without ``--encrypt-data`` (ext4 /data): the baseline;
- aes-xts: ``--encrypt-data`` on the default board (QEMU's Cortex-A72 model has AES);
- adiantum: ``--encrypt-data`` on a board that says ``fleet.data.cipher=adiantum``, as a Pi 4
  (whose A72 has no AES instructions) would choose by itself.

A unit added to the bench's copy of the image waits for the agent's identity file, then prints
on the console: the guest's uptime at enrolment (boot time to enrolment, first boot: the
LUKS2 format included), the cipher of /data's mapping, three 64 MiB writes to /data
(``dd conv=fsync`` after dropping caches) and ``cryptsetup benchmark`` for both ciphers.

The guest is emulated (TCG): AES instructions and NEON are translated, so the absolute figures
are not a Pi's; the ratios against the plain board of the same run are the result. On a Pi,
run ``cryptsetup benchmark`` on the board (ADR 0076 has the published figures).

Run as root: ``.venv/bin/python bench/bench_luks.py [--workdir DIR]``. A workdir a previous
run (or the QEMU tier with ``FLEET_E2E_WORKDIR``) left reuses its rootfs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "qemu-tests"))

from harness.board import Deadlines, SimulatedPi
from harness.fwcrypto import SocketFirmware
from harness.qemu import MachineSpec, PowerCut, loopback_service
from product import images, tool
from product.overlord import Overlord
from product.signing import Repository

from fleetcore.run import run

VERSION = "1.0.1"  # not the QEMU tier's 1.0.0: this copy carries the bench unit
DONE = "BENCH done"
SECRET = bytes(range(32))
WRITE_MIB = 64
SCRIPT = f"""\
#!/bin/sh
# bench/bench_luks.py: measures /data once the agent has enrolled.
while [ ! -s /data/fleet/identity.json ]; do sleep 0.5; done
read -r up _ < /proc/uptime
echo "BENCH enrolled-at $up"
cipher=$(cryptsetup status fleet-data 2>/dev/null | sed -n 's/^ *cipher: *//p')
echo "BENCH cipher ${{cipher:-none}}"
for i in 1 2 3; do
	sync
	echo 3 > /proc/sys/vm/drop_caches
	dd if=/dev/zero of=/data/bench.bin bs=1M count={WRITE_MIB} conv=fsync 2>&1 \\
		| sed -n 's/.*copied, \\([0-9.]*\\) s.*/BENCH write-s \\1/p'
	rm -f /data/bench.bin
done
for c in "aes-xts-plain64 -s 512" "xchacha12,aes-adiantum-plain64 -s 256"; do
	# shellcheck disable=SC2086
	cryptsetup benchmark -c $c 2>&1 | grep 'MiB/s' | sed 's/^ */BENCH cryptsetup /'
done
echo "{DONE}"
"""
UNIT = """\
[Unit]
Description=bench_luks measurements
After=fleet-updater.service

[Service]
ExecStart=/usr/local/sbin/fleet-bench-luks
StandardOutput=journal+console
StandardError=journal+console
"""


def add_bench_unit(rootfs: Path) -> None:
    script = rootfs / "usr/local/sbin/fleet-bench-luks"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(SCRIPT)
    script.chmod(0o755)
    unit = rootfs / "etc/systemd/system/fleet-bench-luks.service"
    unit.write_text(UNIT)
    wants = rootfs / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / unit.name).symlink_to(f"/etc/systemd/system/{unit.name}")


@dataclass(frozen=True)
class Figures:
    board: str
    cipher: str
    enrolled_s: float
    write_mib_s: float
    cryptsetup: list[str]


def parse(board: str, console: str) -> Figures:
    lines = [
        line.split("BENCH ", 1)[1].strip() for line in console.splitlines() if "BENCH " in line
    ]
    value = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in lines if " " in line}
    writes = [float(line.split()[1]) for line in lines if line.startswith("write-s ")]
    if "enrolled-at" not in value or len(writes) != 3:
        raise SystemExit(f"{board}: the guest printed no figures; its console:\n{console[-3000:]}")
    return Figures(
        board=board,
        cipher=value.get("cipher", "?"),
        enrolled_s=float(value["enrolled-at"]),
        write_mib_s=WRITE_MIB / statistics.median(writes),
        cryptsetup=[line.split(" ", 1)[1] for line in lines if line.startswith("cryptsetup ")],
    )


def measure(
    name: str,
    disk: Path,
    session: Path,
    overlord: Overlord,
    kernel_args: tuple[str, ...] = (),
) -> Figures:
    config = session / f"{name}.yaml"
    token = overlord.token("enrollment")
    config.write_text(
        f"overlord_url: http://10.0.2.100/\nenrollment_token: {token}\nhostname: bench-{name}\n"
    )
    card = session / f"{name}.img"
    run([tool("fleet-image"), "flash", disk, "--out", card, "--config", config], timeout=900)
    with closing(SocketFirmware(SECRET, session / f"{name}.sock")) as firmware:
        pi = SimulatedPi(
            card,
            session / name,
            healthy_marker="Welcome to ",
            deadlines=Deadlines(watchdog=600.0, session=1500.0),
            spec=MachineSpec(
                extra_args=loopback_service(overlord.port) + firmware.qemu_args(),
                kernel_args=kernel_args,
            ),
        )
        record = pi.boot(power_cut=PowerCut(marker=DONE))
    print(f"{name}: {record.line()}", flush=True)
    card.unlink()
    return parse(name, pi.console(record))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path("/var/tmp/metrica-fleet/bench-luks"),
        help="where the rootfs, images and repository are kept between runs",
    )
    args = parser.parse_args()
    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    repo = Repository.init(workdir)
    session = workdir / "bench-session"
    run(["rm", "-rf", session])
    session.mkdir()
    rootfs = images.build_rootfs(workdir, repo.root_json)
    plain = images.assemble(rootfs, workdir, VERSION, add_bench_unit)
    luks = images.assemble(rootfs, workdir, VERSION, add_bench_unit, extra=("--encrypt-data",))
    overlord = Overlord(session, repo.repo, repo.keys)
    overlord.start()
    try:
        results = [
            measure("plain", plain.disk, session, overlord),
            measure("aes-xts", luks.disk, session, overlord),
            measure("adiantum", luks.disk, session, overlord, ("fleet.data.cipher=adiantum",)),
        ]
    finally:
        overlord.stop()
    base = results[0]
    print(f"\n{'board':<10} {'/data cipher':<32} {'boot to enrolment':>22} {'write to /data':>26}")
    for r in results:
        boot = f"{r.enrolled_s:6.1f} s ({r.enrolled_s / base.enrolled_s:.2f}x)"
        write = f"{r.write_mib_s:6.1f} MiB/s ({r.write_mib_s / base.write_mib_s:.2f}x)"
        print(f"{r.board:<10} {r.cipher:<32} {boot:>22} {write:>26}")
    print("\ncryptsetup benchmark in the guest (plain board; encryption, decryption):")
    for line in base.cryptsetup:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
