"""Rootfs build backends, one class per file behind :class:`image.backends.base.Backend`."""

from __future__ import annotations

from image.backends.base import Backend, BackendName
from image.backends.debootstrap import DebootstrapBackend
from image.backends.pigen import PiGenBackend

BACKENDS: dict[BackendName, type[Backend]] = {
    BackendName.DEBOOTSTRAP: DebootstrapBackend,
    BackendName.PI_GEN: PiGenBackend,
}

__all__ = ["BACKENDS", "Backend", "BackendName"]
