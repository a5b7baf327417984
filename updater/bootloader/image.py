"""An EEPROM image (``pieeprom-*.bin``), checked before anything is staged.

What the device can tell from the bytes, as rpi-eeprom's tools do: the size is the board's
flash (512 KiB on the Pi 4's BCM2711, 2 MiB on the Pi 5's BCM2712; ``rpi-eeprom-config``
rejects any other), the version is the ``BUILD_TIMESTAMP=`` string inside
(``rpi-eeprom-update`` greps it), and a BCM2712 image that supports the A/B EEPROM carries a
``bootsys`` file at offset 0x10008 (``rpi-eeprom-update``'s ``isABCapableImage``). The A/B
tool takes the image without its first 64 KiB (the read-only section), 1011712 bytes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from fleetcore.release import Hardware
from updater.errors import BootloaderError

IMAGE_SIZE = {Hardware.PI4: 512 * 1024, Hardware.PI5: 2 * 1024 * 1024}
SOC = {Hardware.PI4: "2711", Hardware.PI5: "2712"}
_BUILD_TIMESTAMP = re.compile(rb"BUILD_TIMESTAMP=(\d{1,10})(?!\d)")
_AB_MARKER_OFFSET = 0x10008
AB_PARTITION_OFFSET = 64 * 1024
AB_PARTITION_SIZE = 1011712


@dataclass(frozen=True)
class EepromImage:
    data: bytes
    family: Hardware
    timestamp: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def ab_capable(self) -> bool:
        marker = self.data[_AB_MARKER_OFFSET : _AB_MARKER_OFFSET + 8]
        return marker.rstrip(b"\0") == b"bootsys"

    def ab_partition(self) -> bytes:
        """What ``rpi-eeprom-ab update`` writes: the image past its read-only section."""
        return self.data[AB_PARTITION_OFFSET : AB_PARTITION_OFFSET + AB_PARTITION_SIZE]


def load(data: bytes, family: Hardware) -> EepromImage:
    """The image for a board of ``family``, or :class:`BootloaderError` saying why not."""
    size = IMAGE_SIZE.get(family)
    if size is None:
        raise BootloaderError(f"a {family.value} board has no EEPROM bootloader")
    if len(data) != size:
        other = next((f for f, s in IMAGE_SIZE.items() if s == len(data)), None)
        built_for = f" (the {other.value} flash size)" if other else ""
        raise BootloaderError(
            f"the EEPROM image is {len(data)} bytes{built_for}; a {family.value} board's "
            f"flash takes {size}"
        )
    stamps = {int(m.group(1)) for m in _BUILD_TIMESTAMP.finditer(data)}
    if len(stamps) != 1:
        what = "no" if not stamps else "more than one"
        raise BootloaderError(f"the EEPROM image has {what} BUILD_TIMESTAMP")
    return EepromImage(data=data, family=family, timestamp=stamps.pop())
