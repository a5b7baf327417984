"""The simulated Raspberry Pi firmware: which partition to boot, and the tryboot contract.

The contract, shared with the updater's simulated firmware backend:

- ``simfw/tryboot`` on the config partition: present = the guest asked for a one-shot trial
  before it rebooted. The firmware consumes (deletes) it at the next boot and boots
  ``[tryboot] boot_partition``, else ``[all] boot_partition``.
- The flag is volatile: after anything but a reboot the guest asked for (watchdog reset, power
  cut, crash, power-off) the firmware drops it unused, as the real firmware loses it in RAM.
- Before each boot the firmware writes ``simfw/boot.json`` =
  ``{"boot_partition": N, "tryboot": true|false}`` on the config partition, the simulated
  ``/proc/device-tree/chosen/bootloader/{partition,tryboot}``, with ``"signed": true`` when
  a board with a customer key verified the slot's boot.sig (``chosen/bootloader/signed``).
- Secure boot (:mod:`harness.secureboot`): a board given a customer public key boots only a
  boot partition's ``boot.img`` whose ``boot.sig`` verifies against it, and takes kernel,
  initramfs and ``cmdline.txt`` from inside ``boot.img``; a refused partition is unbootable
  (the flag is lost, the committed slot boots next). Without a key, ``boot_ramdisk=1`` in the
  partition's ``config.txt`` loads ``boot.img`` unchecked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from harness import autoboot
from harness.disk import FatVolume
from harness.errors import AutobootError

CONFIG_LABEL = "config"
AUTOBOOT = "autoboot.txt"
TRYBOOT_FLAG = "simfw/tryboot"
BOOT_STATE = "simfw/boot.json"
DEFAULT_PARTITION = 1
"""What the real firmware boots when autoboot.txt is missing or unreadable."""


class Reason(StrEnum):
    ALL = "[all] boot_partition"
    TRYBOOT = "tryboot flag: [tryboot] boot_partition"
    TRYBOOT_WITHOUT_SECTION = "tryboot flag, no [tryboot] boot_partition: [all] boot_partition"
    NO_AUTOBOOT = "no autoboot.txt: partition 1"
    BAD_AUTOBOOT = "unreadable autoboot.txt: partition 1"


@dataclass(frozen=True)
class Decision:
    partition: int
    tryboot: bool
    reason: Reason
    detail: str = ""


def decide(autoboot_txt: bytes | None, *, tryboot: bool) -> Decision:
    """Pick the boot partition from autoboot.txt and the (already consumed) tryboot flag."""
    if autoboot_txt is None:
        return Decision(DEFAULT_PARTITION, tryboot, Reason.NO_AUTOBOOT)
    try:
        parsed = autoboot.parse(autoboot_txt)
        committed = parsed.boot_partition("all")
        trial = parsed.boot_partition("tryboot")
    except AutobootError as err:
        return Decision(DEFAULT_PARTITION, tryboot, Reason.BAD_AUTOBOOT, str(err))
    detail = "" if committed is not None else f"none set: partition {DEFAULT_PARTITION}"
    committed = committed if committed is not None else DEFAULT_PARTITION
    if not tryboot:
        return Decision(committed, False, Reason.ALL, detail)
    if trial is None:
        return Decision(committed, True, Reason.TRYBOOT_WITHOUT_SECTION, detail)
    return Decision(trial, True, Reason.TRYBOOT)


def boot_state(decision: Decision, *, signed: bool = False) -> bytes:
    """The content of ``simfw/boot.json`` for ``decision``; ``signed``: the boot.sig of the
    booted slot verified against the board's customer key (signed-boot mode)."""
    state: dict[str, int | bool] = {
        "boot_partition": decision.partition,
        "tryboot": decision.tryboot,
    }
    if signed:
        state["signed"] = True
    return json.dumps(state, sort_keys=True).encode() + b"\n"


class ConfigPartition:
    """The firmware's view of partition 1: autoboot.txt and the ``simfw/`` files."""

    def __init__(self, volume: FatVolume) -> None:
        self.volume = volume

    def take_tryboot_flag(self) -> bool:
        """Consume the one-shot flag: return whether it was set, and clear it."""
        return self.volume.delete(TRYBOOT_FLAG)

    def drop_tryboot_flag(self) -> bool:
        """Lose the flag as a reset does; return whether one was lost."""
        return self.volume.delete(TRYBOOT_FLAG)

    def select(self, *, tryboot: bool) -> Decision:
        return decide(self.volume.read(AUTOBOOT), tryboot=tryboot)

    def record(self, decision: Decision, *, signed: bool) -> None:
        """Write ``simfw/boot.json`` for the boot about to start."""
        self.volume.write(BOOT_STATE, boot_state(decision, signed=signed))


@dataclass(frozen=True)
class BootFiles:
    kernel: Path
    initrd: Path
    cmdline: str


KERNEL_PREFIX = "vmlinuz"
INITRD_PREFIX = "initrd"
CMDLINE = "cmdline.txt"


def _only(names: list[str], prefix: str) -> str | None:
    matches = sorted(n for n in names if n.lower().startswith(prefix))
    return matches[0] if len(matches) == 1 else None


def load_boot_files(volume: FatVolume, dest: Path) -> BootFiles | str:
    """Copy kernel, initramfs and cmdline.txt out of a boot partition.

    Return the files, or why the partition cannot boot (the firmware then resets).
    """
    names = volume.list()
    kernel = _only(names, KERNEL_PREFIX)
    initrd = _only(names, INITRD_PREFIX)
    if kernel is None:
        return f"partition {volume.part.number}: not exactly one {KERNEL_PREFIX}* file"
    if initrd is None:
        return f"partition {volume.part.number}: not exactly one {INITRD_PREFIX}* file"
    cmdline = volume.read(CMDLINE)
    if cmdline is None:
        return f"partition {volume.part.number}: no {CMDLINE}"
    dest.mkdir(parents=True, exist_ok=True)
    files = BootFiles(dest / "kernel", dest / "initrd", cmdline.decode(errors="replace").strip())
    volume.copy_out(kernel, files.kernel)
    volume.copy_out(initrd, files.initrd)
    return files
