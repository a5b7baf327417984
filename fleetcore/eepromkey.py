"""The signed-boot state an rpi-eeprom image carries: ``SIGNED_BOOT`` and the customer key.

rpi-eeprom-config's layout: the image is a chain of sections, each a big-endian 32-bit magic
(``magic & 0xfffff00f == 0x55aaf00f``) and a 32-bit length, the next section 8-byte aligned
after ``8 + length`` bytes; a magic of 0 or 0xffffffff ends the chain. A modifiable file
(magic ``0x55aaf11f``) has a 12-byte NUL-padded name and 4 reserved bytes after its length,
then ``length - 16`` bytes of content. Two files matter here:

- ``bootconf.txt``: the bootloader config; ``SIGNED_BOOT=1`` turns signed-boot mode on;
- ``pubkey.bin`` (``rpi-eeprom-config --pubkey``): the customer RSA-2048 public key as the
  modulus (256 bytes) then the exponent (8 bytes), both little-endian.

The bootloader holds ONE customer key; in signed-boot mode it boots only a ``boot.img`` whose
``boot.sig`` verifies under it (:mod:`fleetcore.bootsig`). Pure: bytes in, a
:class:`KeyState` or one :class:`EepromKeyError` out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import rsa

from fleetcore.bootsig import RSA_BITS, fingerprint
from fleetcore.errors import FormatError

MAGIC = 0x55AAF00F
MAGIC_MASK = 0xFFFFF00F
FILE_MAGIC = 0x55AAF11F
CONFIG_FILE = "bootconf.txt"
KEY_FILE = "pubkey.bin"
KEY_BYTES = RSA_BITS // 8 + 8
_NAME_LEN = 12
_FILE_HEADER = 4 + _NAME_LEN  # what the length counts before a file's content
_CONFIG_MAX = 4076  # one 4 KiB erase sector less the file header (rpi-eeprom-config)


class EepromKeyError(FormatError):
    """An EEPROM image's sections, config or customer key are not what a bootloader takes."""


@dataclass(frozen=True)
class KeyState:
    signed_boot: bool
    key: rsa.RSAPublicKey | None

    def describe(self) -> str:
        mode = "signed boot" if self.signed_boot else "signed boot off"
        key = f"customer key {fingerprint(self.key)}" if self.key else "no customer key"
        return f"{mode}, {key}"


def _files(data: bytes) -> tuple[list[tuple[str, bytes]], int]:
    """The chain's files (name, content) and the offset of its end marker."""
    files: list[tuple[str, bytes]] = []
    offset = 0
    while offset + 8 <= len(data):
        magic, length = struct.unpack_from(">LL", data, offset)
        if magic in (0, 0xFFFFFFFF):
            return files, offset
        if magic & MAGIC_MASK != MAGIC:
            raise EepromKeyError(f"the EEPROM image has no section header at offset {offset}")
        end = offset + 8 + length
        if end > len(data):
            raise EepromKeyError(f"the EEPROM section at offset {offset} runs past the image")
        if magic == FILE_MAGIC:
            if length < _FILE_HEADER:
                raise EepromKeyError(f"the EEPROM file at offset {offset} is truncated")
            raw = data[offset + 8 : offset + 8 + _NAME_LEN].rstrip(b"\0")
            try:
                name = raw.decode("ascii")
            except UnicodeDecodeError as err:
                raise EepromKeyError(f"the EEPROM file at offset {offset} has no name") from err
            files.append((name, data[offset + 8 + _FILE_HEADER : end]))
        offset = (end + 7) & ~7
    if offset < len(data):
        raise EepromKeyError("the EEPROM image ends inside a section header")
    return files, offset


def _only(files: list[tuple[str, bytes]], name: str) -> bytes | None:
    found = [content for file, content in files if file == name]
    if len(found) > 1:
        raise EepromKeyError(f"the EEPROM image holds {len(found)} {name} files")
    return found[0] if found else None


def config_text(data: bytes) -> str:
    """The image's ``bootconf.txt`` ("" when its chain has none, as in a blank test image)."""
    files, _ = _files(data)
    config = _only(files, CONFIG_FILE) or b""
    try:
        return config.decode("ascii")
    except UnicodeDecodeError as err:
        raise EepromKeyError(f"the EEPROM's {CONFIG_FILE} is not ASCII") from err


def _signed_boot(config: bytes) -> bool:
    try:
        text = config.decode("ascii")
    except UnicodeDecodeError as err:
        raise EepromKeyError(f"the EEPROM's {CONFIG_FILE} is not ASCII") from err
    values = [line.partition("=")[2].strip() for line in text.splitlines()]
    names = [line.partition("=")[0].strip() for line in text.splitlines()]
    setting = [v for n, v in zip(names, values, strict=True) if n == "SIGNED_BOOT"]
    if setting and setting[-1] not in ("0", "1"):
        raise EepromKeyError(f"the EEPROM's SIGNED_BOOT is {setting[-1][:20]!r}, not 0 or 1")
    return bool(setting) and setting[-1] == "1"


def _key(content: bytes) -> rsa.RSAPublicKey:
    if len(content) != KEY_BYTES:
        raise EepromKeyError(
            f"the EEPROM's {KEY_FILE} is {len(content)} bytes; an RSA-{RSA_BITS} key is {KEY_BYTES}"
        )
    n = int.from_bytes(content[: RSA_BITS // 8], "little")
    e = int.from_bytes(content[RSA_BITS // 8 :], "little")
    if n.bit_length() != RSA_BITS or e < 3 or e % 2 == 0:
        raise EepromKeyError(f"the EEPROM's {KEY_FILE} is not an RSA-{RSA_BITS} public key")
    return rsa.RSAPublicNumbers(e, n).public_key()


def read(data: bytes) -> KeyState:
    """The signed-boot state of an EEPROM image (its sections from offset 0). An image with
    no section chain at all (a blank test image) has signed boot off and no key."""
    files, _ = _files(data)
    if not files:
        return KeyState(signed_boot=False, key=None)
    config = _only(files, CONFIG_FILE)
    if config is None:
        raise EepromKeyError(f"the EEPROM image has no {CONFIG_FILE}")
    content = _only(files, KEY_FILE)
    key = _key(content) if content is not None else None
    signed_boot = _signed_boot(config)
    if signed_boot and key is None:
        raise EepromKeyError(f"the EEPROM's SIGNED_BOOT=1 has no customer key ({KEY_FILE})")
    return KeyState(signed_boot=signed_boot, key=key)


def file_section(name: str, content: bytes) -> bytes:
    """One modifiable-file section (header, name, content, 0xff padding to 8 bytes)."""
    section = struct.pack(">LL", FILE_MAGIC, len(content) + _FILE_HEADER)
    section += name.encode("ascii").ljust(_NAME_LEN, b"\0") + bytes(4) + content
    return section + b"\xff" * (-len(section) % 8)


def key_bytes(key: rsa.RSAPublicKey) -> bytes:
    """``pubkey.bin`` for ``key``, as ``rpi-eeprom-config --pubkey`` writes it."""
    numbers = key.public_numbers()
    if key.key_size != RSA_BITS:
        raise EepromKeyError(
            f"the bootloader takes RSA-{RSA_BITS} keys only, not RSA-{key.key_size}"
        )
    return numbers.n.to_bytes(RSA_BITS // 8, "little") + numbers.e.to_bytes(8, "little")


def build(image: bytes, config: str, key: rsa.RSAPublicKey | None) -> bytes:
    """``image`` with its section chain replaced by ``bootconf.txt`` (``config``) and, when
    ``key`` is given, ``pubkey.bin`` (the old chain zeroed); the bytes past them keep the
    image's own (its build timestamp)."""
    body = config.encode("ascii")
    if len(body) > _CONFIG_MAX:
        raise EepromKeyError(f"{CONFIG_FILE} is {len(body)} bytes, more than {_CONFIG_MAX}")
    sections = file_section(CONFIG_FILE, body)
    if key is not None:
        sections += file_section(KEY_FILE, key_bytes(key))
    _, old_end = _files(image)
    sections += bytes(max(8, old_end + 8 - len(sections)))
    if len(sections) > len(image) or any(image[len(sections) : len(sections) + 8]):
        raise EepromKeyError("the EEPROM image has no room for its config and key sections")
    return sections + image[len(sections) :]


def with_signed_boot(image: bytes, config: str, key: rsa.RSAPublicKey | None) -> bytes:
    """``image`` in signed-boot mode under ``key`` (the close step), or with signed boot off
    when ``key`` is None (the open step): ``SIGNED_BOOT`` set in ``config`` accordingly."""
    lines = [
        line for line in config.splitlines() if line.partition("=")[0].strip() != "SIGNED_BOOT"
    ]
    lines.append(f"SIGNED_BOOT={1 if key is not None else 0}")
    return build(image, "\n".join(lines) + "\n", key)
