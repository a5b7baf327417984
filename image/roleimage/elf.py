"""The dynamic section of an ELF file: the libraries it needs and where it looks for them.

Just enough of the ELF64 little-endian format (aarch64 and x86-64) to read ``DT_NEEDED`` and
``DT_RUNPATH``/``DT_RPATH`` from the file's bytes, without running anything of the target.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_MAGIC = b"\x7fELF"
_ELFCLASS64, _ELFDATA2LSB = 2, 1
_PT_LOAD, _PT_DYNAMIC = 1, 2
_DT_NULL, _DT_NEEDED, _DT_STRTAB, _DT_RPATH, _DT_RUNPATH = 0, 1, 5, 15, 29
_PHDR = struct.Struct("<IIQQQQQQ")
_DYN = struct.Struct("<qQ")


@dataclass(frozen=True)
class Dynamic:
    needed: tuple[str, ...]
    runpath: tuple[str, ...]


def is_elf64(data: bytes) -> bool:
    return (
        len(data) >= 64
        and data[:4] == _MAGIC
        and (data[4], data[5])
        == (
            _ELFCLASS64,
            _ELFDATA2LSB,
        )
    )


def _string(data: bytes, offset: int) -> str:
    end = data.index(b"\0", offset)
    return data[offset:end].decode(errors="replace")


def dynamic(data: bytes) -> Dynamic | None:
    """The dynamic dependencies of an ELF64 LE file; None for a static or non-ELF file."""
    if not is_elf64(data):
        return None
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    loads: list[tuple[int, int, int]] = []
    dyn: tuple[int, int] | None = None
    for index in range(phnum):
        p_type, _, offset, vaddr, _, filesz, _, _ = _PHDR.unpack_from(
            data, phoff + index * phentsize
        )
        if p_type == _PT_LOAD:
            loads.append((vaddr, offset, filesz))
        elif p_type == _PT_DYNAMIC:
            dyn = (offset, filesz)
    if dyn is None:
        return None
    tags: list[tuple[int, int]] = []
    for at in range(dyn[0], dyn[0] + dyn[1] - _DYN.size + 1, _DYN.size):
        tag, value = _DYN.unpack_from(data, at)
        if tag == _DT_NULL:
            break
        tags.append((tag, value))
    strtab_addr = next((value for tag, value in tags if tag == _DT_STRTAB), None)
    if strtab_addr is None:
        return None
    strtab = next(
        (off + strtab_addr - va for va, off, size in loads if va <= strtab_addr < va + size),
        strtab_addr,
    )
    needed = tuple(_string(data, strtab + value) for tag, value in tags if tag == _DT_NEEDED)
    paths = [
        _string(data, strtab + value) for tag, value in tags if tag in (_DT_RPATH, _DT_RUNPATH)
    ]
    runpath = tuple(p for path in paths for p in path.split(":") if p)
    return Dynamic(needed, runpath)
