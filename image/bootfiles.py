"""Which boards a boot partition's files serve: ``assemble --hardware`` and ``inspect``.

A board boots from the boot partition when it finds what its firmware loads there
(``fleetcore.boards``): ``config.txt``; on the Pi 4 family ``start4.elf`` and
``fixup4.dat``; the kernel config.txt names with ``kernel=`` (else the family's default);
every ``initramfs`` file it names; and the board's device tree (``device_tree=`` if set,
else its downstream name, or its upstream name under ``upstream_kernel=1``).

config.txt is read the way the firmware reads it for that board: ``[all]`` resets the filters,
``[none]`` hides what follows, model filters (``[pi4]``, ``[cm5]``, ``[board-type=0x14]``)
apply to the boards that see them, and a section under any other filter (``[tryboot]``,
``[EDID=...]``, a serial or GPIO filter) is a runtime condition, not counted. Not modelled:
``os_prefix``, ``include``, ``start_file``/``start_x``. File names compare without case, as on
FAT.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from fleetcore.boards import (
    DEFAULT_KERNELS,
    FAMILY_FIRMWARE,
    PI_FAMILIES,
    SPECS,
    Board,
    BoardSpec,
    boards_of,
)
from fleetcore.release import Hardware

CONFIG_TXT = "config.txt"
_MODEL_FILTER = re.compile(r"^(pi\d+\+?|pi0w|cm\d+s?|board-type=(0x[0-9a-f]+|\d+))$")


@dataclass(frozen=True)
class BootFiles:
    """The files of a boot partition (relative POSIX paths) and its config.txt."""

    names: frozenset[str]
    config_txt: str | None

    @classmethod
    def of(cls, names: Iterable[str], config_txt: str | None) -> BootFiles:
        return cls(frozenset(name.strip("/").lower() for name in names), config_txt)

    @classmethod
    def read(cls, folder: Path) -> BootFiles:
        """A boot folder in a rootfs (``DIR/boot/firmware``)."""
        names = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
        config = folder / CONFIG_TXT
        text = config.read_text(errors="replace") if config.is_file() else None
        return cls.of(names, text)

    def has(self, pattern: str) -> bool:
        pattern = pattern.strip("/").lower()
        if not any(c in pattern for c in "*?["):
            return pattern in self.names
        return any(fnmatch.fnmatchcase(name, pattern) for name in self.names)

    def settings(self, spec: BoardSpec | None) -> dict[str, str]:
        """The config.txt settings that apply to the board of ``spec`` (None: to any board,
        the unconditional ones only): the last value of each key, ``initramfs`` included."""
        out: dict[str, str] = {}
        model_ok, runtime, hidden = True, False, False
        for raw in (self.config_txt or "").splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("[") and line.endswith("]"):
                name = line[1:-1].strip().lower()
                if name == "all":
                    model_ok, runtime, hidden = True, False, False
                elif name == "none":
                    hidden = True
                elif _MODEL_FILTER.fullmatch(name):
                    model_ok = spec is not None and _sees(spec, name)
                else:
                    runtime = True
                continue
            if hidden or runtime or not model_ok:
                continue
            if line.startswith("initramfs ") or line.startswith("initramfs\t"):
                out["initramfs"] = line.split()[1]
            elif "=" in line:
                key, value = line.split("=", 1)
                out[key.strip().lower()] = value.strip()
        return out

    def missing_for_board(self, spec: BoardSpec) -> list[str]:
        """What ``spec``'s board would not find; each entry names a file (or alternatives)."""
        assert spec.family is not None
        if self.config_txt is None:
            return [CONFIG_TXT]
        settings = self.settings(spec)
        wanted: list[tuple[str, ...]] = [(name,) for name in FAMILY_FIRMWARE[spec.family]]
        wanted.append(
            (settings["kernel"],) if "kernel" in settings else DEFAULT_KERNELS[spec.family]
        )
        wanted += [(name,) for name in _initramfs(settings)]
        if "device_tree" in settings:
            wanted.append((settings["device_tree"],))
        elif settings.get("upstream_kernel") == "1":
            wanted.append(spec.upstream_dtbs + spec.dtbs)
        else:
            wanted.append(spec.dtbs)
        return [" or ".join(names) for names in wanted if not any(map(self.has, names))]

    def missing_for(self, family: Hardware) -> list[str]:
        """What an image for ``family`` lacks, over every board of the family, in order."""
        if family is Hardware.QEMU:
            return self._missing_for_qemu()
        missing: dict[str, None] = {}
        for spec in boards_of(family):
            missing.update(dict.fromkeys(self.missing_for_board(spec)))
        return list(missing)

    def _missing_for_qemu(self) -> list[str]:
        """The QEMU tier boots the kernel and initramfs config.txt names (``-kernel``)."""
        if self.config_txt is None:
            return [CONFIG_TXT]
        settings = self.settings(None)
        if "kernel" not in settings:
            return ["a kernel= line in config.txt"]
        wanted = [settings["kernel"], *_initramfs(settings)]
        return [name for name in wanted if not self.has(name)]

    def boards(self) -> list[Board]:
        """Every board with tryboot A/B whose boot files are all here."""
        return [
            spec.board
            for spec in SPECS
            if spec.family is not None and not self.missing_for_board(spec)
        ]

    def families(self) -> list[Hardware]:
        """The Raspberry Pi families every one of whose boards these files serve."""
        return [family for family in PI_FAMILIES if not self.missing_for(family)]


def _sees(spec: BoardSpec, name: str) -> bool:
    if name.startswith("board-type="):
        return int(name.split("=", 1)[1], 0) in spec.type_codes
    return name in spec.filters


def _initramfs(settings: dict[str, str]) -> list[str]:
    return [name for name in settings.get("initramfs", "").split(",") if name]


def describe_boards(files: BootFiles) -> str:
    """One line for ``inspect``: the boards served, by family."""
    boards = files.boards()
    if not boards:
        return "none (no board's boot files are complete)"
    by_family = {
        family: [s.board.value for s in boards_of(family) if s.board in boards]
        for family in PI_FAMILIES
    }
    return "; ".join(
        f"{family.value}: {', '.join(names)}" for family, names in by_family.items() if names
    )


def check(files: BootFiles, hardware: Collection[Hardware]) -> str | None:
    """Why these files cannot serve ``hardware`` (one message naming every missing file)."""
    problems = [
        f"{family.value} lacks {', '.join(missing)}"
        for family in hardware
        if (missing := files.missing_for(family))
    ]
    return "; ".join(problems) if problems else None
