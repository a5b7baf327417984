"""A personalised SD card: v1 flashed with `fleet-image flash --out` and a `fleet.yaml`."""

from __future__ import annotations

from pathlib import Path

from harness.qemu import GUEST_SERVICE_ADDRESS

from fleetcore.run import run
from product import tool

HOSTNAME = "e2e-pi"
OVERLORD_URL = f"http://{GUEST_SERVICE_ADDRESS}/"
"""Where the guest reaches the host's Overlord through the harness's loopback relay."""


def flash(disk: Path, out: Path, enrollment_token: str, extra: str = "") -> Path:
    """``extra``: more of the owner's ``fleet.yaml`` (YAML), e.g. its remote-access veto."""
    config = out.with_name("fleet.yaml")
    config.write_text(
        f"overlord_url: {OVERLORD_URL}\nenrollment_token: {enrollment_token}\n"
        f"hostname: {HOSTNAME}\n{extra}"
    )
    run([tool("fleet-image"), "flash", disk, "--out", out, "--config", config], timeout=900)
    return out
