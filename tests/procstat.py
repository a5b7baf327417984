"""What the kernel says about a test's child process."""

from __future__ import annotations

from pathlib import Path


def vm_hwm_kib(pid: int) -> int:
    """Peak resident memory (VmHWM, the kernel's high-water mark) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for process {pid}")
