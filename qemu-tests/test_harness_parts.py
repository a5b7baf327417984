"""The harness's small parts: cpio writer, module closure, apt fields, QEMU argv, console."""

from __future__ import annotations

import gzip
import io
import os
import stat
from pathlib import Path

import pytest
from harness import qemu
from harness.cpio import TRAILER, Archive
from harness.debian import DebianCache, kernel_image_of, package_of, parse_control
from harness.errors import GuestAssetError, QemuError
from harness.firmware import BootFiles
from harness.qemu import MachineSpec, PowerCut, loopback_service
from harness.testdisk import module_closure


def read_newc(data: bytes) -> list[tuple[str, int, bytes, int]]:
    """An independent reader of the newc format, for checking the writer."""
    entries, offset = [], 0
    while True:
        header = data[offset : offset + 110]
        assert header[:6] == b"070701"
        fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        mode, size, rmaj, rmin, namesize = fields[1], fields[6], fields[9], fields[10], fields[11]
        name_end = offset + 110 + namesize
        name = data[offset + 110 : name_end - 1].decode()
        data_start = name_end + (-name_end % 4)
        body = data[data_start : data_start + size]
        offset = data_start + size + (-(data_start + size) % 4)
        if name == TRAILER:
            assert offset == len(data)
            return entries
        entries.append((name, mode, body, (rmaj << 8) | rmin))


def test_cpio_newc_entries_round_trip():
    archive = Archive()
    archive.directory("bin")
    archive.file("bin/busybox", b"\x7fELF" + b"x" * 5, mode=0o755)
    archive.symlink("bin/sh", "busybox")
    archive.char_device("dev/console", 5, 1)
    archive.file("init", b"#!/bin/sh\n", mode=0o755)

    entries = read_newc(gzip.decompress(archive.gzipped()))

    assert [e[0] for e in entries] == ["bin", "bin/busybox", "bin/sh", "dev/console", "init"]
    by_name = {e[0]: e for e in entries}
    assert stat.S_ISDIR(by_name["bin"][1])
    assert by_name["bin/busybox"][2] == b"\x7fELFxxxxx"
    assert stat.S_IMODE(by_name["bin/busybox"][1]) == 0o755
    assert stat.S_ISLNK(by_name["bin/sh"][1]) and by_name["bin/sh"][2] == b"busybox"
    assert stat.S_ISCHR(by_name["dev/console"][1]) and by_name["dev/console"][3] == (5 << 8) | 1


def test_cpio_is_reproducible():
    def build() -> bytes:
        archive = Archive()
        archive.file("init", b"echo hi\n", mode=0o755)
        return archive.gzipped()

    assert build() == build()


def fake_module(root: Path, rel: str, depends: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF\0garbage\0license=GPL\0depends=" + depends.encode() + b"\0name=x\0")


def test_module_closure_orders_dependencies_first(tmp_path):
    fake_module(
        tmp_path, "drivers/virtio/virtio_pci.ko", "virtio_pci_modern_dev,virtio-pci-legacy-dev"
    )
    fake_module(tmp_path, "drivers/virtio/virtio_pci_modern_dev.ko", "")
    fake_module(tmp_path, "drivers/virtio/virtio_pci_legacy_dev.ko", "")
    fake_module(tmp_path, "fs/fat/vfat.ko", "fat")
    fake_module(tmp_path, "fs/fat/fat.ko", "")

    order = [p.stem for p in module_closure(tmp_path, ("virtio_pci", "vfat", "fat"))]

    assert order == [
        "virtio_pci_modern_dev",
        "virtio_pci_legacy_dev",
        "virtio_pci",
        "fat",
        "vfat",
    ]


def test_module_closure_names_a_missing_module(tmp_path):
    fake_module(tmp_path, "fs/fat/vfat.ko", "fat")

    with pytest.raises(GuestAssetError, match="fat"):
        module_closure(tmp_path, ("vfat",))


CONTROL = """Package: linux-image-arm64
Source: linux-signed-arm64 (6.1.192+2)
Version: 6.1.192-2
Depends: linux-image-6.1.0-56-arm64 (= 6.1.192-2)
Description: Linux for 64-bit ARMv8 machines (meta-package)
 This package depends on the latest Linux kernel.
SHA256: 6f4ed2d1cb9106bc977c2b1960008f175e2eed5740340634b7894e65ef5acc82

Package: linux-image-arm64
Version: 6.1.176-1
"""


def test_control_fields_of_the_first_paragraph():
    fields = parse_control(CONTROL)

    assert fields["Version"] == "6.1.192-2"
    assert kernel_image_of(fields) == "linux-image-6.1.0-56-arm64"
    assert package_of(fields).sha256.startswith("6f4ed2d1")


def test_control_without_a_kernel_image_or_hash_is_refused():
    fields = parse_control("Package: busybox-static\nVersion: 1\nDepends: libc6\n")

    with pytest.raises(GuestAssetError):
        kernel_image_of(fields)
    with pytest.raises(GuestAssetError, match="SHA256"):
        package_of(fields)


def test_qemu_command_boots_the_chosen_files_from_the_card(tmp_path):
    files = BootFiles(tmp_path / "k", tmp_path / "i", "console=ttyAMA0 fleet.slot=b")
    spec = MachineSpec(extra_args=("-netdev", "user,id=n0"))

    argv = qemu.command(spec, tmp_path / "card.img", files)

    joined = " ".join(argv)
    assert argv[0] == "qemu-system-aarch64"
    assert "-M virt -cpu cortex-a72 -smp 2 -m 1024" in joined
    assert argv[argv.index("-append") + 1] == "console=ttyAMA0 fleet.slot=b"
    assert "-no-reboot" in argv
    assert f"file={tmp_path / 'card.img'},format=raw" in joined
    assert "snapshot=off" in joined
    assert argv[-2:] == ["-netdev", "user,id=n0"]


def test_the_boards_kernel_arguments_follow_the_cards(tmp_path):
    files = BootFiles(tmp_path / "k", tmp_path / "i", "console=ttyAMA0 fleet.slot=b")
    spec = MachineSpec(kernel_args=("fleet.data.cipher=adiantum",))

    argv = qemu.command(spec, tmp_path / "card.img", files)

    assert argv[argv.index("-append") + 1] == (
        "console=ttyAMA0 fleet.slot=b fleet.data.cipher=adiantum"
    )


def test_a_card_model_throttles_the_cards_reads_only_when_asked(tmp_path):
    files = BootFiles(tmp_path / "k", tmp_path / "i", "console=ttyAMA0")
    drive = lambda spec: qemu.command(spec, tmp_path / "card.img", files)  # noqa: E731

    assert "throttling" not in " ".join(drive(MachineSpec()))
    argv = drive(MachineSpec(card_read_bps=45 << 20))
    assert argv[argv.index("-drive") + 1].endswith(f",throttling.bps-read={45 << 20}")


def test_power_cut_needs_exactly_one_trigger():
    assert "marker" in PowerCut(marker="guest: x").describe()
    assert PowerCut(when=lambda: True, label="the Overlord saw it").describe() == (
        "once the Overlord saw it"
    )
    with pytest.raises(QemuError):
        PowerCut()
    with pytest.raises(QemuError):
        PowerCut(marker="x", after=1.0)
    with pytest.raises(QemuError):
        PowerCut(after=1.0, when=lambda: True, label="x")
    with pytest.raises(QemuError, match="label"):
        PowerCut(when=lambda: True)


def test_power_cut_on_a_condition_ends_the_boot_once_it_holds(tmp_path, monkeypatch):
    """A stand-in for QEMU that prints and then runs forever: the boot ends on the condition."""
    fake = tmp_path / "fake-qemu"
    fake.write_text("#!/bin/sh\necho 'guest: healthy'\nexec sleep 60\n")
    fake.chmod(0o755)
    monkeypatch.setattr(qemu, "WHEN_POLL_SECONDS", 0.05)
    polls: list[int] = []

    def condition() -> bool:
        polls.append(1)
        return len(polls) == 3

    files = BootFiles(tmp_path / "vmlinuz", tmp_path / "initrd", "console=ttyAMA0")
    result = qemu.boot(
        MachineSpec(qemu=str(fake)),
        tmp_path / "card.img",
        files,
        log=io.BytesIO(),
        healthy_marker="guest: healthy",
        watchdog_seconds=50,
        session_seconds=50,
        power_cut=PowerCut(when=condition, label="the third poll"),
    )
    assert result.end is qemu.End.POWER_CUT
    assert result.detail == "once the third poll"
    assert result.healthy_after is not None
    assert len(polls) == 3


def test_console_splits_lines_across_reads_and_keeps_every_byte():
    read_fd, write_fd = os.pipe()
    log = io.BytesIO()
    with os.fdopen(read_fd, "rb", buffering=0) as stream:
        console = qemu._Console(stream, log)
        os.write(write_fd, b"[ 1.0] booting\r\nguest: hea")
        first = console.read(1.0)
        os.write(write_fd, b"lthy on partition 2\nno newline at end")
        second = console.read(1.0)
        os.close(write_fd)
        last = console.read(1.0)

    assert first == ["[ 1.0] booting"]
    assert second == ["guest: healthy on partition 2"]
    assert last == ["no newline at end"]
    assert console.closed
    assert log.getvalue() == (b"[ 1.0] booting\r\nguest: healthy on partition 2\nno newline at end")


def test_loopback_service_forwards_one_port_and_restricts_the_rest():
    args = loopback_service(8123, guest_port=8080)

    netdev = args[args.index("-netdev") + 1]
    assert netdev.startswith("user,id=net0,restrict=on,guestfwd=tcp:10.0.2.100:8080-cmd:")
    assert netdev.endswith("relay.py 127.0.0.1 8123")
    assert "virtio-net-pci,netdev=net0" in args


def test_loopback_service_forwards_host_ports_to_the_guest_on_loopback_only():
    args = loopback_service(8123, forwards={18088: 8088, 18089: 22})

    netdev = args[args.index("-netdev") + 1]
    assert netdev.startswith(
        "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:18088-:8088,"
        "hostfwd=tcp:127.0.0.1:18089-:22,guestfwd=tcp:10.0.2.100:80-cmd:"
    )
    assert netdev.endswith("relay.py 127.0.0.1 8123")


@pytest.mark.qemu
def test_qemu_refusing_its_arguments_is_a_harness_error_not_a_guest_crash(tmp_path):
    files = BootFiles(tmp_path / "missing-kernel", tmp_path / "missing-initrd", "console=ttyAMA0")
    log = io.BytesIO()

    with pytest.raises(QemuError, match="exited 1"):
        qemu.boot(
            MachineSpec(),
            tmp_path / "missing.img",
            files,
            log=log,
            healthy_marker="never",
            watchdog_seconds=30,
            session_seconds=30,
        )
    assert b"qemu-system-aarch64" in log.getvalue()


def test_cache_keeps_one_unpacked_version_per_kind(tmp_path):
    cache = DebianCache(tmp_path)
    entries = {}
    for key, stamp in [
        ("old-kernel", "kernel linux-image-6.1.0-55-arm64 6.1.190-1"),
        ("new-kernel", "kernel linux-image-6.1.0-56-arm64 6.1.192-2"),
        ("busybox", "busybox busybox-static 1:1.35.0-4"),
        ("half-unpacked", None),
    ]:
        entries[key] = tmp_path / "unpacked" / key
        entries[key].mkdir(parents=True)
        if stamp:
            (entries[key] / ".complete").write_text(stamp + "\n")

    cache._prune(keep=entries["new-kernel"], kind="kernel")

    assert sorted(p.name for p in (tmp_path / "unpacked").iterdir()) == [
        "busybox",
        "half-unpacked",
        "new-kernel",
    ]
