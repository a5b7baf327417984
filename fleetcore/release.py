"""The OTA release format shared by the image builder (writer) and the updater (reader).

A release of version V is three kinds of file under a release repository's base URL:

- TUF targets (signed through ``signing``):
  ``os/V/manifest.json`` (this module's :class:`Manifest`) and one chunk index per image,
  ``os/V/boot.index.json`` and ``os/V/system.index.json`` (:class:`ChunkIndex`).
- Chunks, outside TUF: ``chunks/<first 4 hex>/<sha256>.zst``, each the zstd-compressed bytes
  of one content-defined chunk, addressed by the SHA-256 of its *uncompressed* bytes. A chunk
  is trusted because its hash is listed in a TUF-verified index, so the store may be shared by
  every release and served by any static web server, object store or CDN.

Role bundles are single TUF targets ``roles/<name>/<version>.tar.zst``; a bootloader release
is ``bootloader/<family>/<version>/`` with :data:`BOOTLOADER_FILES`.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

from fleetcore import strictjson
from fleetcore.errors import FormatError
from fleetcore.version import Version

FORMAT: Literal[1] = 1
SHA256_RE = r"^[0-9a-f]{64}$"
Sha256 = Annotated[str, Field(pattern=SHA256_RE)]
_SHA256 = re.compile(SHA256_RE)
_M = TypeVar("_M", bound=BaseModel)

# Where a device keeps the chunk indexes of what each slot holds, relative to the root of its
# data partition: ``<SLOT_INDEX_DIR>/<slot>/<image>.index.json``. The updater keeps each slot's
# after writing it; the image builder puts slot A's there, so the first update is seeded.
SLOT_INDEX_DIR = "fleet/slots"

# zstd's worst-case expansion of incompressible input (ZSTD_COMPRESSBOUND), plus frame header.
_ZSTD_SLACK = 1024


class Hardware(StrEnum):
    """Boards a release may target. ``qemu`` is the arm64 virt machine of the QEMU tier."""

    PI4 = "pi4"
    PI5 = "pi5"
    QEMU = "qemu"


class ImageName(StrEnum):
    BOOT = "boot"
    SYSTEM = "system"


class SystemFormat(StrEnum):
    EROFS = "erofs"
    SQUASHFS = "squashfs"


class _Strict(BaseModel):
    """Unknown keys refused. Sizes and offsets are ``StrictInt``: pydantic's lax ``int`` would
    also take ``3.0``, ``"3"`` or ``3e0``, spellings the publisher never writes and the device's
    compact index parser (``updater.chunkindex``) does not read, so the two would disagree."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# The largest chunk any index may list: a protocol limit, far above the chunker's 256 KiB, so
# a decoder can cap its output before it has read the index entry a chunk belongs to.
MAX_CHUNK_SIZE = 16 * 1024 * 1024
# The largest image an index or manifest may describe: far above any partition, and a bound
# the device's compact index parser needs (it builds one stand-in entry per 16 MiB of it).
MAX_IMAGE_SIZE = 1 << 40


class Chunker(_Strict):
    """Parameters of the content-defined chunker that cut an image."""

    algorithm: Literal["fastcdc2020"] = "fastcdc2020"
    min_size: StrictInt = Field(gt=0, le=MAX_CHUNK_SIZE)
    avg_size: StrictInt = Field(gt=0, le=MAX_CHUNK_SIZE)
    max_size: StrictInt = Field(gt=0, le=MAX_CHUNK_SIZE)

    @model_validator(mode="after")
    def _ordered(self) -> Chunker:
        if not self.min_size <= self.avg_size <= self.max_size:
            raise ValueError("chunker sizes must satisfy min_size <= avg_size <= max_size")
        return self


class Chunk(_Strict):
    sha256: Sha256
    size: StrictInt = Field(gt=0, le=MAX_CHUNK_SIZE)


class ChunkIndex(_Strict):
    """The ordered chunks that concatenate to one image."""

    format: Literal[1] = FORMAT
    image: ImageName
    image_size: StrictInt = Field(ge=0, le=MAX_IMAGE_SIZE)
    image_sha256: Sha256
    chunker: Chunker
    chunks: tuple[Chunk, ...]

    @model_validator(mode="after")
    def _sizes_add_up(self) -> ChunkIndex:
        total = sum(c.size for c in self.chunks)
        if total != self.image_size:
            raise ValueError(f"chunk sizes add up to {total}, image_size is {self.image_size}")
        return self

    def offsets(self) -> list[int]:
        """Byte offset of each chunk in the image."""
        out, pos = [], 0
        for chunk in self.chunks:
            out.append(pos)
            pos += chunk.size
        return out


class ImageEntry(_Strict):
    size: StrictInt = Field(ge=0, le=MAX_IMAGE_SIZE)
    sha256: Sha256
    index: str = Field(description="TUF target name of the image's chunk index")


class BytePatch(_Strict):
    offset: StrictInt = Field(ge=0)
    data: str = Field(pattern=r"^([0-9a-f]{2})+$", description="hex bytes written at offset")

    @property
    def end(self) -> int:
        return self.offset + len(self.data) // 2


class SlotVariant(_Strict):
    """An image as written to slot B: the indexed (slot A) image with a few bytes replaced.

    Each boot partition's cmdline.txt names its own system partition, so slot B's boot image
    differs from slot A's in a handful of bytes (that name, the FAT label and serial). The
    patches ride in the signed manifest; the result is checked against ``sha256``.
    """

    sha256: Sha256
    patches: tuple[BytePatch, ...] = Field(max_length=64)


class Manifest(_Strict):
    """What an OS release contains; the TUF target ``os/<version>/manifest.json``."""

    format: Literal[1] = FORMAT
    kind: Literal["os"] = "os"
    version: Version
    hardware: tuple[Hardware, ...] = Field(min_length=1)
    system_format: SystemFormat
    created: StrictInt = Field(ge=0, description="SOURCE_DATE_EPOCH of the build")
    images: dict[ImageName, ImageEntry]
    slot_b: dict[ImageName, SlotVariant] = Field(
        default_factory=dict, description="images that differ when written to slot B"
    )

    @model_validator(mode="after")
    def _both_images(self) -> Manifest:
        missing = set(ImageName) - set(self.images)
        if missing:
            raise ValueError(f"manifest lacks images: {', '.join(sorted(missing))}")
        for name, variant in self.slot_b.items():
            pos = 0
            for patch in variant.patches:
                if patch.offset < pos or patch.end > self.images[name].size:
                    raise ValueError(f"slot_b patches of {name} overlap or leave the image")
                pos = patch.end
        return self

    def written(
        self, image: ImageName, slot: Literal["a", "b"]
    ) -> tuple[str, tuple[BytePatch, ...]]:
        """SHA-256 of ``image`` as written into ``slot``, and the patches that make it."""
        variant = self.slot_b.get(image) if slot == "b" else None
        if variant is None:
            return self.images[image].sha256, ()
        return variant.sha256, variant.patches


def apply_patches(block: bytes, offset: int, patches: tuple[BytePatch, ...]) -> bytes:
    """``block`` (the image's bytes from ``offset``) with the patches that touch it applied."""
    end = offset + len(block)
    touching = [p for p in patches if p.offset < end and p.end > offset]
    if not touching:
        return block
    out = bytearray(block)
    for patch in touching:
        data = bytes.fromhex(patch.data)
        lo, hi = max(patch.offset, offset), min(patch.end, end)
        out[lo - offset : hi - offset] = data[lo - patch.offset : hi - patch.offset]
    return bytes(out)


def manifest_target(version: Version | str) -> str:
    return f"os/{version}/manifest.json"


def index_target(version: Version | str, image: ImageName) -> str:
    return f"os/{version}/{image.value}.index.json"


def role_target(name: str, version: Version | str) -> str:
    return f"roles/{name}/{version}.tar.zst"


# A bootloader release's targets, as rpi-eeprom ships them (fleetcore.eeprom): the EEPROM
# image, its pieeprom.sig and the recovery.bin that flashes it.
BOOTLOADER_FILES = ("pieeprom.bin", "pieeprom.sig", "recovery.bin")


def bootloader_target(family: Hardware, version: Version | str, name: str) -> str:
    return f"bootloader/{family.value}/{version}/{name}"


def chunk_path(sha256: str) -> str:
    """Path of a chunk below the release repository's base URL or directory."""
    if not _SHA256.fullmatch(sha256):
        raise FormatError(f"not a SHA-256 hex digest: {sha256!r}")
    return f"chunks/{sha256[:4]}/{sha256}.zst"


def max_compressed_size(size: int) -> int:
    """Upper bound for a compressed chunk of ``size`` bytes: the download length cap."""
    return size + (size >> 8) + _ZSTD_SLACK


def _load(model: type[_M], data: bytes, what: str) -> _M:
    """Parse with strict JSON (a duplicated key would let two readers see two documents)."""
    try:
        return model.model_validate(strictjson.loads(data, what=what))
    except FormatError as err:
        raise FormatError(f"invalid {err}") from err
    except (ValueError, ValidationError) as err:
        first = err.errors()[0] if isinstance(err, ValidationError) else None
        detail = (
            f"{'.'.join(str(p) for p in first['loc']) or 'top level'}: {first['msg']}"
            if first
            else str(err)
        )
        raise FormatError(f"invalid {what}: {detail}") from err


def _dump(model: BaseModel) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, so equal inputs give equal bytes."""
    return json.dumps(model.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()


def load_manifest(data: bytes) -> Manifest:
    return _load(Manifest, data, "release manifest")


def dump_manifest(manifest: Manifest) -> bytes:
    return _dump(manifest)


def load_index(data: bytes) -> ChunkIndex:
    return _load(ChunkIndex, data, "chunk index")


def dump_index(index: ChunkIndex) -> bytes:
    return _dump(index)
