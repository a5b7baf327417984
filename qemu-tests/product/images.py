"""The real fleet image, built once, and the release versions the scenarios install.

`fleet-image build --backend debootstrap` makes one rootfs (its base comes from the image
builder's content-keyed cache). Each version is a copy of that rootfs with the QEMU test layer
(`QEMU_LAYER`) and the version's own change, assembled with `fleet-image assemble` and
published with `fleet-sign add-release`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetcore.run import run
from product import tool

# What the QEMU board needs beyond the shipped image, as files below the rootfs:
# - updater.yaml: the simulated firmware backend (the harness plays the Pi firmware), the
#   hardware the virt board cannot report, and short polls so a scenario does not wait minutes
#   for the next poll. The health checks are the shipped ones: a trial needs the guest's
#   dockerd to answer (`health.docker: required`, the default), since the image ships
#   Docker with Compose v2 and the role scenarios run a role on it;
# - a unit drop-in that copies the updater's log (at INFO, -v) to the serial console, where
#   the harness and a failed test's report read it, after the device-mapper table (versions
#   are assembled with --verity or --boot-key: the root is read through dm-verity, ADR 0071).
UPDATER_YAML = """\
hardware: pi4
poll_min_s: 5
poll_max_s: 10
offline_backoff_max_s: 20
firmware:
  backend: simulated
health:
  deadline_s: 240
"""
CONSOLE_DROPIN = """\
[Service]
ExecStartPre=-/sbin/dmsetup table
ExecStart=
ExecStart=/opt/metrica-fleet/bin/fleet-updater -v run
StandardOutput=journal+console
StandardError=journal+console
"""
QEMU_LAYER = {
    "etc/metrica-fleet/updater.yaml": UPDATER_YAML,
    "etc/systemd/system/fleet-updater.service.d/10-qemu-console.conf": CONSOLE_DROPIN,
}
VERSION_FILE = "etc/metrica-fleet/version"
FAILING_CHECK = "etc/metrica-fleet/health.d/required.d/50-e2e-broken"
VERITY_PROBE = "usr/share/metrica-e2e/verity-probe"
PROBE_MARKER = b"metrica-e2e verity probe: the story flips a byte of this file on the card\n"
PROBE_UNIT = "etc/systemd/system/e2e-verity-probe.service"
PROBE_UNIT_TEXT = f"""\
[Unit]
Description=Read the verity probe (QEMU story), before the agent's health checks
Before=fleet-updater.service

[Service]
Type=oneshot
ExecStart=-/bin/dd if=/{VERITY_PROBE} of=/dev/null bs=64k
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
"""
FAILING_CHECK_SCRIPT = """\
#!/bin/sh
echo "e2e: this release fails its health check on purpose" >&2
exit 1
"""

# The card's data partition. A real card is larger than the image and the first boot grows
# /data to fill it; the virtual card is the image, so it gets room here. With the default
# 256 MiB, the role manager's 128 MiB staging reserve refused e2e-crash 1.0.1 after the
# story's OS and role updates (128 MiB free).
DATA_SIZE = "data=768M"
WORKDIR_ENV = "FLEET_E2E_WORKDIR"
# The checked-in RSA-2048 boot keys (tests/image/fixtures/bootkeys/README.md): the customer key
# the simulated board's bootloader holds, and another key for a release it must refuse.
BOOT_KEYS = Path(__file__).resolve().parents[2] / "tests" / "image" / "fixtures" / "bootkeys"
CUSTOMER_KEY, CUSTOMER_PUBLIC_KEY = BOOT_KEYS / "customer.pem", BOOT_KEYS / "customer.pub.pem"
WRONG_KEY = BOOT_KEYS / "other.pem"
Change = Callable[[Path], None]
DONE = "done"
"""Stamp of a finished build or assemble: with ``FLEET_E2E_WORKDIR`` set, a developer's rerun
of the tier reuses them (the tier itself always starts from an empty folder)."""


def no_change(rootfs: Path) -> None:
    """v1 and v2 differ only in their version."""


def failing_health_check(rootfs: Path) -> None:
    """A required health check that always fails: the trial must fall back. And the verity
    probe, a file a unit reads at every boot before the agent starts, which the story
    corrupts on the card before 3.0.0's trial (issue 17, scenario 3 with the updater's own
    check bypassed)."""
    _write(rootfs / FAILING_CHECK, FAILING_CHECK_SCRIPT, executable=True)
    probe = rootfs / VERITY_PROBE
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_bytes(verity_probe())
    _write(rootfs / PROBE_UNIT, PROBE_UNIT_TEXT)
    wants = rootfs / "etc/systemd/system/multi-user.target.wants" / Path(PROBE_UNIT).name
    wants.parent.mkdir(parents=True, exist_ok=True)
    wants.unlink(missing_ok=True)
    wants.symlink_to(f"/{PROBE_UNIT}")


def verity_probe() -> bytes:
    """The probe's bytes: a marker, then 256 KiB that do not compress (a SHA-256 counter
    stream, the same in every build), so squashfs stores them as they are and the marker
    can be found on the card."""
    stream = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(8192))
    return PROBE_MARKER + stream


@dataclass(frozen=True)
class Release:
    version: str
    out: Path

    @property
    def disk(self) -> Path:
        return self.out / "disk.img"

    @property
    def release_dir(self) -> Path:
        return self.out / "release"


def workdir(factory: pytest.TempPathFactory) -> Path:
    """A fresh folder for the session, or ``FLEET_E2E_WORKDIR`` for a developer's rerun.

    There the rootfs, the assembled versions and the signed repository of an earlier run
    are reused; the run's own state (Overlord database, card, board) is always made anew.
    """
    chosen = os.environ.get(WORKDIR_ENV)
    if not chosen:
        return factory.mktemp("product")
    folder = Path(chosen)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(folder / "session", ignore_errors=True)
    return folder


def build_rootfs(workdir: Path, root_json: Path) -> Path:
    """`fleet-image build --backend debootstrap`: the real image's rootfs, in ``workdir``.

    A rootfs a previous run finished in the same ``workdir`` is reused (see ``DONE``).
    """
    config = workdir / "build.yaml"
    config.write_text(f"root_json: {root_json}\nhostname: metrica-e2e\n")
    out = workdir / "build"
    if (out / DONE).exists():
        print(f"fleet-image build: reusing {out}")
        return out / "rootfs"
    if out.exists():
        shutil.rmtree(out)
    started = time.monotonic()
    run(
        [tool("fleet-image"), "build", "--backend", "debootstrap",
         "--config", config, "--out", out],
        timeout=3600,
    )  # fmt: skip
    print(f"fleet-image build: {time.monotonic() - started:.0f} s")
    (out / DONE).touch()
    return out / "rootfs"


def assemble(
    base: Path,
    workdir: Path,
    version: str,
    change: Change = no_change,
    extra: Sequence[str] = (),
    boot_key: Path | None = None,
) -> Release:
    """A copy of ``base`` with the QEMU layer, the version stamp and ``change``, assembled
    (with ``extra`` assemble options, which name the output folder too) with ``--verity``, or
    with ``--boot-key boot_key`` (secure boot and verity, ADR 0070) when one is given.

    An image a previous run finished in the same ``workdir`` is reused (see ``DONE``).
    """
    mode = ["--verity"] if boot_key is None else ["--boot-key", str(boot_key)]
    signed = [] if boot_key is None else [f"-signed-{boot_key.stem}"]
    name = "".join([f"image-{version}", *extra, *signed])
    out = workdir / name
    if (workdir / f"{name}.{DONE}").exists():
        print(f"fleet-image assemble {version}: reusing {out}")
        return Release(version, out)
    if out.exists():
        shutil.rmtree(out)
    rootfs = workdir / f"rootfs-{version}"
    if rootfs.exists():
        shutil.rmtree(rootfs)
    run(["cp", "-a", "--reflink=auto", base, rootfs])
    for relative, text in QEMU_LAYER.items():
        _write(rootfs / relative, text)
    _write(rootfs / VERSION_FILE, f"{version}\n")
    change(rootfs)
    started = time.monotonic()
    run(
        [tool("fleet-image"), "assemble", "--rootfs", rootfs, "--out", out,
         "--version", version, "--sizes", DATA_SIZE, *mode, *extra],
        timeout=1800,
    )  # fmt: skip
    print(f"fleet-image assemble {version}: {time.monotonic() - started:.0f} s")
    shutil.rmtree(rootfs)
    (workdir / f"{name}.{DONE}").touch()
    return Release(version, out)


def _write(path: Path, text: str, *, executable: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755 if executable else 0o644)
