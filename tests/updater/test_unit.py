"""The systemd unit: the settings the agent's code relies on."""

from __future__ import annotations

import configparser
from pathlib import Path

from updater.config import TransferConfig

UNIT = Path(__file__).resolve().parents[2] / "updater" / "systemd" / "fleet-updater.service"


def test_unit_is_notify_with_a_watchdog_longer_than_the_longest_retry():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(UNIT)
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["ExecStart"].endswith("fleet-updater run")
    transfer = TransferConfig()
    worst = (transfer.retries + 1) * transfer.timeout_s + transfer.backoff_max_s
    assert int(service["WatchdogSec"]) > worst
    assert "/data" in unit["Unit"]["RequiresMountsFor"]


def test_unit_reads_an_optional_environment_file_on_data():
    """The root is read-only: proxy variables come from /data, and the file may be absent."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(UNIT)
    assert unit["Service"]["EnvironmentFile"] == "-/data/fleet/environment"
