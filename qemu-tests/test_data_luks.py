"""The device's first-boot LUKS2 program (stage-fleet's fleet-data-luks, ADR 0076) on a real loop
device with real cryptsetup, keyed through the harness's simulated firmware over a pty.

The host's kernel has no device-mapper, so these tests cover what needs none: the firmware
protocol, the key derivation (checked against a LUKS2 keyslot), and every refusal, each of which
must leave the partition's bytes unchanged. Formatting, mapping and the power-cut protocol need
dm-crypt and run in the guest.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from harness.fwcrypto import MESSAGE_MAX, PtyFirmware, SocketFirmware, answer

from fleetcore.run import run, run_text
from image.encrypteddata import BLANK_MARKER

FILES = Path(__file__).resolve().parents[1] / "pi-gen-config/stage-fleet/01-readonly/files"
PROGRAM = FILES / "fleet-data-luks"
SECRET = b"\x11" * 32
OTHER_SECRET = b"\x22" * 32
MIB = 1024 * 1024


def spec_key(secret: bytes) -> bytes:
    """ADR 0076's derivation, written from the ADR: HKDF-SHA256 over the firmware's HMAC."""
    ikm = hmac.new(secret, b"metrica-fleet/data-luks/v1", hashlib.sha256).digest()
    prk = hmac.new(b"metrica-fleet", ikm, hashlib.sha256).digest()
    return hmac.new(prk, b"luks2 data key v1\x01", hashlib.sha256).digest()


def test_the_firmware_answers_an_hmac_and_refuses_bad_requests():
    reply = answer(SECRET, b"HMAC hello")
    assert reply == b"OK " + hmac.new(SECRET, b"hello", hashlib.sha256).hexdigest().encode()
    assert answer(SECRET, b"HMAC ").startswith(b"ERR ")
    assert answer(SECRET, b"HMAC " + b"x" * (MESSAGE_MAX + 1)).startswith(b"ERR ")
    assert answer(SECRET, b"READ secret") == b"ERR unknown request"


def test_the_socket_firmware_answers_each_connection_in_turn(tmp_path):
    with closing(SocketFirmware(SECRET, tmp_path / "fw.sock")) as firmware:
        for message in (b"first", b"second"):
            with socket.socket(socket.AF_UNIX) as guest:
                guest.connect(str(firmware.path))
                guest.sendall(b"HMAC " + message + b"\nHMAC \n")
                replies = b""
                while replies.count(b"\n") < 2:
                    replies += guest.recv(4096)
            expected = [answer(SECRET, b"HMAC " + message), answer(SECRET, b"HMAC ")]
            assert replies.splitlines() == expected
    assert not (tmp_path / "fw.sock").exists()


@pytest.mark.qemu
def test_qemu_connects_the_virtio_port_to_the_firmware(tmp_path):
    """QEMU accepts the port's arguments and connects to the socket (paused, nothing boots)."""
    with closing(SocketFirmware(SECRET, tmp_path / "fw.sock")) as firmware:
        qemu = subprocess.Popen(
            [
                "qemu-system-aarch64",
                "-M",
                "virt",
                "-nodefaults",
                "-display",
                "none",
                "-S",
                *firmware.qemu_args(),
            ],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while firmware.connections == 0 and qemu.poll() is None:
                assert time.monotonic() < deadline, "QEMU never connected the port"
                time.sleep(0.1)
            assert qemu.poll() is None, "QEMU refused the port's arguments"
        finally:
            qemu.kill()
            _, err = qemu.communicate()
        assert firmware.connections == 1, err.decode()


class Device:
    """A data partition on a loop device, the config partition's state folder, a board."""

    def __init__(self, tmp_path: Path) -> None:
        self.backing = tmp_path / "data.img"
        with self.backing.open("wb") as f:
            f.write(BLANK_MARKER)
            f.truncate(48 * MIB)
        self.state = tmp_path / "config"
        self.state.mkdir()
        self.loop = Path(run_text(["losetup", "--find", "--show", str(self.backing)]).strip())
        self.name = f"fleet-test-{os.getpid()}-{tmp_path.name[-12:]}"

    def boot(self, secret: bytes, cipher: str | None = None) -> str:
        """Runs the program as the initramfs does (``cipher``: its fleet.data.cipher=); the
        error line, or "" when it opened."""
        env = {**os.environ, "FLEET_DATA_CIPHER": cipher} if cipher is not None else None
        with closing(PtyFirmware(secret)) as firmware:
            proc = run(
                [PROGRAM, self.loop, self.state, firmware.port, self.name],
                check=False,
                timeout=300,
                env=env,
            )
        if proc.returncode == 0:
            return ""
        lines = proc.stderr.decode().strip().splitlines()
        assert lines, "a failure says why"
        return lines[-1]

    def digest(self) -> str:
        run(["sync"])
        return hashlib.sha256(self.backing.read_bytes()).hexdigest()

    def refuses(self, secret: bytes) -> str:
        """Boots with ``secret`` expecting a refusal that leaves every byte as it was."""
        before = self.digest()
        error = self.boot(secret)
        assert error, "refused"
        assert self.digest() == before
        return error

    def overwrite_start(self, size: int) -> None:
        with self.backing.open("r+b") as f:
            f.write(b"\0" * size)

    def state_text(self) -> str:
        path = self.state / "fleet-data-luks.state"
        return path.read_text().strip() if path.exists() else ""

    def detach(self) -> None:
        # A host with dm-crypt maps the volume when the key is right.
        if (Path("/dev/mapper") / self.name).exists():
            run(["cryptsetup", "close", self.name])
        run(["losetup", "--detach", self.loop], check=False)


@pytest.fixture
def device(tmp_path: Path, require_root: None) -> Iterator[Device]:
    made = Device(tmp_path)
    try:
        yield made
    finally:
        made.detach()


def luks_format(device: Device, secret: bytes, label: str) -> None:
    """What the program's format step writes, made here (the host has no device-mapper to run
    the whole step; the QEMU scenarios run it on the device)."""
    run(
        [
            "cryptsetup",
            "luksFormat",
            "--batch-mode",
            "--type",
            "luks2",
            "--sector-size",
            "4096",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--label",
            label,
            "--key-file=-",
            device.loop,
        ],
        input=spec_key(secret),
    )
    (device.state / "fleet-data-luks.state").write_text("done\n")


@pytest.mark.integration
def test_the_devices_key_is_the_adrs_derivation(device):
    luks_format(device, SECRET, "fleet-data")

    # Past the key check: only mapping it is left, which needs dm-crypt (the guest has it).
    assert "does not unlock" not in device.boot(SECRET)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("label", "secret", "error"),
    [
        # The card in another board.
        (
            "fleet-data",
            OTHER_SECRET,
            "cannot open /data: {loop} does not unlock with this device's secret",
        ),
        # A format that was never finished, with no format in progress on the config partition.
        (
            "fleet-data-new",
            SECRET,
            "{loop} is LUKS2 labelled 'fleet-data-new', not a finished fleet-data volume",
        ),
    ],
)
def test_a_volume_is_refused_and_changes_nothing(device, label, secret, error):
    luks_format(device, SECRET, label)

    assert device.refuses(secret) == "fleet-data-luks: " + error.format(loop=device.loop)
    assert device.state_text() == "done"


@pytest.mark.integration
def test_an_unreadable_secret_interface_changes_nothing(device):
    before = device.digest()

    missing = run(
        [PROGRAM, device.loop, device.state, "/dev/no-such-port", device.name], check=False
    )
    silent = run([PROGRAM, device.loop, device.state, "/dev/null", device.name], check=False)

    assert missing.stderr.decode().strip() == (
        "fleet-data-luks: cannot read the device secret: no firmware interface at /dev/no-such-port"
    )
    assert silent.stderr.decode().strip() == (
        "fleet-data-luks: cannot read the device secret: no answer from the firmware at /dev/null"
    )
    assert device.digest() == before
    assert device.state_text() == ""


@pytest.mark.integration
def test_a_truncated_luks_header_is_refused_and_not_formatted(device):
    luks_format(device, SECRET, "fleet-data")
    # Both binary LUKS2 headers gone (the primary at 0, the secondary at 16 KiB).
    device.overwrite_start(32 * 1024)

    assert device.refuses(SECRET) == (
        f"fleet-data-luks: {device.loop} is neither blank nor a LUKS2 volume (a damaged "
        "header?); not touching it"
    )


@pytest.mark.integration
def test_a_damaged_primary_header_still_unlocks_from_the_secondary_copy(device):
    luks_format(device, SECRET, "fleet-data")
    device.overwrite_start(4096)

    assert "does not unlock" not in device.boot(SECRET)
    assert "does not unlock" in device.boot(OTHER_SECRET)


@pytest.mark.integration
def test_a_partition_without_the_blank_marker_is_not_formatted(device):
    device.overwrite_start(len(BLANK_MARKER))

    assert "is neither blank nor a LUKS2 volume" in device.refuses(SECRET)


@pytest.mark.integration
def test_an_unknown_cipher_argument_is_refused_before_anything_is_written(device):
    before = device.digest()

    error = device.boot(SECRET, cipher="des")

    assert error == "fleet-data-luks: fleet.data.cipher=des: not adiantum, aes-xts or auto"
    assert device.digest() == before
    assert device.state_text() == ""


@pytest.mark.integration
def test_the_cipher_argument_overrides_the_cpus_choice(device):
    """aes-xts named on a host whose /proc/cpuinfo has no arm64 ``Features`` line (the CPU's
    word would be Adiantum, which this host's kernel crypto API cannot even format; the
    guest formats Adiantum in scenario 2). Mapping needs dm-crypt, so the boot stops there."""
    assert device.boot(SECRET, cipher="aes-xts") == (
        f"fleet-data-luks: cannot map {device.loop} as /dev/mapper/{device.name} (dm-crypt)"
    )
    dump = run_text(["cryptsetup", "luksDump", device.loop])
    assert "cipher: aes-xts-plain64" in dump
    assert "fleet-data-new" in dump  # a format in progress, finished on the next boot


# rpi-fw-crypto's `hmac` command as raspberrypi/utils' rpifwcrypto documents it (HMAC-SHA256
# of the input file, max 2 KiB, under an OTP key, hex out without a newline), standing in for
# a Pi's firmware with a known key 1: this host has no VideoCore.
PI_FIRMWARE = """#!/bin/sh
[ "$1 $2 $4 $6 $7" = "hmac --in --key-id --outform hex" ] || {{ echo "Usage: $0" >&2; exit 1; }}
[ "$5" = 1 ] || {{ echo "Last crypto error: 3 (no such key)" >&2; exit 255; }}
{answer}
"""
PI_HMAC = 'openssl dgst -sha256 -mac HMAC -macopt hexkey:{key} "$3" | sed "s/.*= //" | tr -d "\\n"'


def pi_firmware(tmp_path: Path, answer: str) -> dict[str, str]:
    """A PATH whose rpi-fw-crypto answers with the shell line ``answer``."""
    tools = tmp_path / "pi-firmware"
    tools.mkdir(exist_ok=True)
    program = tools / "rpi-fw-crypto"
    program.write_text(PI_FIRMWARE.format(answer=answer))
    program.chmod(0o755)
    return {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}"}


def pi_boot(device: Device, env: dict[str, str]) -> str:
    """The program as a Pi's initramfs runs it (FIRMWARE_PORT rpi-fw-crypto); its last line."""
    proc = run(
        [PROGRAM, device.loop, device.state, "rpi-fw-crypto", device.name],
        check=False,
        timeout=300,
        env=env,
    )
    return (proc.stderr.decode().strip().splitlines() or [""])[-1]


@pytest.mark.integration
def test_a_pis_firmware_hmac_through_rpi_fw_crypto_is_the_same_derivation(device, tmp_path):
    luks_format(device, SECRET, "fleet-data")

    own = pi_boot(device, pi_firmware(tmp_path, PI_HMAC.format(key=SECRET.hex())))
    other = pi_boot(device, pi_firmware(tmp_path, PI_HMAC.format(key=OTHER_SECRET.hex())))

    # Past the key check: only mapping it is left, which needs dm-crypt (the guest has it).
    assert "does not unlock" not in own
    assert other.endswith("does not unlock with this device's secret")


@pytest.mark.integration
@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ("exit 255", "the firmware refused the HMAC (rpi-fw-crypto)"),
        ("printf 'Successfully'", "rpi-fw-crypto answered no HMAC"),
        ("printf '%064d' 7; printf 0", "rpi-fw-crypto answered no HMAC"),
        (None, "rpi-fw-crypto is not in the initramfs"),
    ],
    ids=["refused", "not-hex", "too-long", "missing"],
)
def test_a_pi_firmware_that_gives_no_hmac_changes_nothing(device, tmp_path, answer, error):
    before = device.digest()
    if answer is None:
        env = {**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        assert not any(Path(d, "rpi-fw-crypto").exists() for d in env["PATH"].split(":"))
    else:
        env = pi_firmware(tmp_path, answer)

    assert pi_boot(device, env) == f"fleet-data-luks: cannot read the device secret: {error}"
    assert device.digest() == before
    assert device.state_text() == ""
