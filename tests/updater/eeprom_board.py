"""A simulated Raspberry Pi EEPROM: files in a temp dir, and fake tools that follow the docs.

- ``vcgencmd bootloader_version`` prints the running image's build the way the firmware does
  (rpi-eeprom's ``rpi-bootloader-version`` prints the same layout); ``vcgencmd
  bootloader_config`` and ``rpi-eeprom-config`` print the EEPROM's configuration.
- ``rpi-eeprom-ab`` (only on an A/B board) keeps two EEPROM partitions: ``spi-check``,
  ``update FILE`` (the inactive one), ``mark-partition-valid SHA256`` and
  ``force-commit-opposite``, as rpi-eeprom-update's ``runABUpdate`` calls them.
- :meth:`EepromBoard.power_on` is the boot ROM at reset: with ``recovery.bin`` on the config
  partition it runs it, which checks ``pieeprom.upd`` against ``pieeprom.sig``, writes the
  EEPROM and renames itself ``recovery.000`` (the Raspberry Pi documentation, "Bootloader
  update files"); a committed A/B partition becomes the active one.

``output`` replaces what ``vcgencmd bootloader_version`` prints, for hostile-output tests.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

from fleetcore.eeprom import AB_PARTITION_OFFSET, AB_PARTITION_SIZE, IMAGE_SIZE
from fleetcore.release import Hardware

DEFAULT_CONFIG = "[all]\nBOOT_UART=0\nWAKE_ON_GPIO=1\nBOOT_ORDER=0xf41\n"

_TOOLS = {
    "vcgencmd": """
import datetime, re, sys
from pathlib import Path
state = Path(STATE)
if sys.argv[1:] == ["bootloader_config"]:
    sys.stdout.write((state / "bootconf.txt").read_text())
    sys.exit(0)
if sys.argv[1:] != ["bootloader_version"]:
    sys.exit("vcgencmd: unknown command")
if (state / "output").exists():
    sys.stdout.buffer.write((state / "output").read_bytes())
    sys.exit(0)
active = (state / "active").read_text().strip()
image = (state / active).read_bytes()
ts = int(re.search(rb"BUILD_TIMESTAMP=(\\d+)", image).group(1))
built = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
print(built.strftime("%Y/%m/%d %H:%M:%S"))
print("version 0123456789abcdef0123456789abcdef01234567 (release)")
print(f"timestamp {ts}")
print("update-time 0")
print("capabilities 0x0000007f")
""",
    "rpi-eeprom-config": """
import sys
from pathlib import Path
if sys.argv[1:]:
    sys.exit("rpi-eeprom-config: this fake only prints the current configuration")
sys.stdout.write((Path(STATE) / "bootconf.txt").read_text())
""",
    "rpi-eeprom-ab": """
import hashlib, sys
from pathlib import Path
state = Path(STATE)
if not (state / "ab").exists():
    sys.exit("rpi-eeprom-ab: the SPI flash has no A/B partitions")
active = (state / "active").read_text().strip()
other = "partition-b" if active == "partition-a" else "partition-a"
command = sys.argv[1:]
if command == ["spi-check"]:
    sys.exit(0)
if command[:1] == ["update"] and len(command) == 2:
    data = Path(command[1]).read_bytes()
    if len(data) != AB_SIZE:
        sys.exit(f"rpi-eeprom-ab: image is {len(data)} bytes")
    (state / other).write_bytes(data)
    (state / "valid").unlink(missing_ok=True)
    sys.exit(0)
if command[:1] == ["mark-partition-valid"] and len(command) == 2:
    if hashlib.sha256((state / other).read_bytes()).hexdigest() != command[1]:
        sys.exit("rpi-eeprom-ab: sha256 mismatch")
    (state / "valid").write_text(other)
    sys.exit(0)
if command == ["force-commit-opposite"]:
    if not (state / "valid").exists():
        sys.exit("rpi-eeprom-ab: the opposite partition is not valid")
    (state / "next").write_text(other)
    sys.exit(0)
sys.exit("rpi-eeprom-ab: unknown command")
""",
}


def eeprom_image(family: Hardware, timestamp: int, *, ab: bool = False) -> bytes:
    """An image the size of ``family``'s flash with a ``BUILD_TIMESTAMP`` (and ``bootsys``)."""
    data = bytearray(IMAGE_SIZE[family])
    stamp = f"BUILD_TIMESTAMP={timestamp}\0".encode()
    data[1024 : 1024 + len(stamp)] = stamp
    if ab:
        data[0x10008 : 0x10008 + 8] = b"bootsys\0"
        data[AB_PARTITION_OFFSET + 4096 : AB_PARTITION_OFFSET + 4096 + len(stamp)] = stamp
    return bytes(data)


def eeprom_sig(data: bytes, *, ts: int = 1700000000) -> bytes:
    return f"{hashlib.sha256(data).hexdigest()}\nts: {ts}\n".encode()


class EepromBoard:
    def __init__(
        self,
        base: Path,
        family: Hardware,
        timestamp: int,
        *,
        config: str = DEFAULT_CONFIG,
        ab: bool = False,
    ) -> None:
        self.family = family
        self.state = base / "eeprom"
        self.bin = base / "bin"
        self.state.mkdir(parents=True)
        self.bin.mkdir()
        (self.state / "bootconf.txt").write_text(config)
        image = eeprom_image(family, timestamp, ab=ab)
        if ab:
            (self.state / "ab").touch()
            (self.state / "partition-a").write_bytes(self._partition(image))
            (self.state / "active").write_text("partition-a")
        else:
            (self.state / "eeprom.bin").write_bytes(image)
            (self.state / "active").write_text("eeprom.bin")
        for name, body in _TOOLS.items():
            tool = self.bin / name
            header = (
                f"#!{sys.executable}\nSTATE = {str(self.state)!r}\nAB_SIZE = {AB_PARTITION_SIZE}\n"
            )
            tool.write_text(header + body)
            tool.chmod(0o755)
        self.flash_fails = False

    @staticmethod
    def _partition(image: bytes) -> bytes:
        return image[AB_PARTITION_OFFSET : AB_PARTITION_OFFSET + AB_PARTITION_SIZE]

    def running(self) -> int:
        active = (self.state / "active").read_text().strip()
        match = re.search(rb"BUILD_TIMESTAMP=(\d+)", (self.state / active).read_bytes())
        assert match is not None
        return int(match.group(1))

    def set_output(self, output: bytes) -> None:
        (self.state / "output").write_bytes(output)

    def power_on(self, config_partition: Path) -> None:
        """The boot ROM at reset, and recovery.bin when the config partition holds it."""
        nxt = self.state / "next"
        if nxt.exists():
            (self.state / "active").write_text(nxt.read_text())
            nxt.unlink()
        recovery = config_partition / "recovery.bin"
        if not recovery.exists():
            return
        update, sig = config_partition / "pieeprom.upd", config_partition / "pieeprom.sig"
        if not (update.exists() and sig.exists()):
            return
        image = update.read_bytes()
        digest = sig.read_text().splitlines()[0].strip()
        if hashlib.sha256(image).hexdigest() != digest:
            return  # recovery.bin refuses it; the EEPROM is untouched
        if not self.flash_fails:  # a failed write is verified and the old image kept
            active = (self.state / "active").read_text().strip()
            data = self._partition(image) if (self.state / "ab").exists() else image
            (self.state / active).write_bytes(data)
        recovery.rename(config_partition / "recovery.000")
