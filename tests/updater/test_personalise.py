"""Hostname and Wi-Fi from fleet.yaml land on /data, and the Wi-Fi key leaves the FAT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from fleetcore.firstboot import WiFi
from tests.updater.agents import make_agent, setup_device
from updater.errors import ConfigError
from updater.firstboot import load_firstboot
from updater.paths import Roots
from updater.personalise import CONNECTION_UUID, Personaliser, nm_keyfile

TOOLS = ("hostnamectl", "nmcli", "iw", "rfkill")
FLEET: dict[str, Any] = {
    "overlord_url": "http://overlord.lan",
    "enrollment_token": "enrol-me",
    "hostname": "cam-07",
    "wifi": {"ssid": "Shop Floor", "psk": "s3cret pass\\word", "country": "DE"},
}


def fake_tools(roots: Roots, names: tuple[str, ...] = TOOLS) -> Path:
    """Executables in the image root that only log how they were called."""
    calls = roots.root.parent / "calls.log"
    folder = roots.root / "usr" / "bin"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        tool = folder / name
        tool.write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\n')
        tool.chmod(0o755)
    return calls


def calls_of(log: Path) -> list[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return [line for line in lines if not line.startswith("hostnamectl")]


@pytest.fixture
def roots(tmp_path: Path) -> Roots:
    roots = Roots(root=tmp_path / "root", data=tmp_path / "data", boot_config=tmp_path / "cfg")
    for folder in (roots.root, roots.data, roots.boot_config):
        folder.mkdir()
    return roots


def write_fleet(roots: Roots, **changes: object) -> None:
    roots.fleet_yaml.write_text(yaml.safe_dump({**FLEET, **changes}))


def keyfile(roots: Roots) -> Path:
    return roots.nm_connections / "metrica-wifi.nmconnection"


def test_first_boot_writes_hostname_and_wifi_and_tells_the_system(roots):
    log = fake_tools(roots)
    write_fleet(roots)
    Personaliser(roots).apply(enrolled=False)
    assert roots.hostname_file.read_text() == "cam-07\n"
    assert "hostnamectl set-hostname --transient cam-07" in log.read_text()
    profile = keyfile(roots).read_text()
    assert keyfile(roots).stat().st_mode & 0o777 == 0o600  # NetworkManager ignores others
    assert "ssid=Shop Floor\n" in profile
    assert "key-mgmt=wpa-psk\npsk=s3cret\\spass\\\\word\n" in profile
    assert roots.wifi_country_file.read_text() == "options cfg80211 ieee80211_regdom=DE\n"
    assert calls_of(log) == ["iw reg set DE", "rfkill unblock wifi", "nmcli connection reload"]
    # Not enrolled yet: the key stays until the token leaves with it.
    wifi = load_firstboot(roots.fleet_yaml).wifi
    assert wifi is not None and wifi.psk == FLEET["wifi"]["psk"]


def applied(roots: Roots, *, enrolled: bool) -> tuple[Personaliser, Path]:
    """fleet.yaml applied once by a fresh agent; the calls it made are forgotten."""
    log = fake_tools(roots)
    write_fleet(roots)
    personaliser = Personaliser(roots)
    personaliser.apply(enrolled=enrolled)
    calls_of(log)
    return personaliser, log


def test_the_key_leaves_the_fat_once_applied_on_an_enrolled_device(roots):
    personaliser, log = applied(roots, enrolled=False)
    personaliser.apply(enrolled=True)
    on_fat = load_firstboot(roots.fleet_yaml)
    assert on_fat.wifi is not None and on_fat.wifi.psk is None
    assert on_fat.enrollment_token is None
    assert "s3cret" not in roots.fleet_yaml.read_text()
    # The profile keeps the key, read from the /data copy; nothing changed, nothing reloaded.
    personaliser.apply(enrolled=True)
    assert "psk=s3cret\\spass" in keyfile(roots).read_text()
    assert calls_of(log) == []
    # A new agent process re-applies the volatile kernel settings.
    Personaliser(roots).apply(enrolled=True)
    assert calls_of(log) == ["iw reg set DE", "rfkill unblock wifi", "nmcli connection reload"]


def test_an_edited_fleet_yaml_is_followed(roots):
    personaliser, log = applied(roots, enrolled=True)
    write_fleet(
        roots,
        enrollment_token=None,
        hostname="cam-08",
        wifi={"ssid": "Office", "psk": "another-key-1"},
    )
    personaliser.apply(enrolled=True)
    assert roots.hostname_file.read_text() == "cam-08\n"
    profile = keyfile(roots).read_text()
    assert "ssid=Office\n" in profile and "psk=another-key-1\n" in profile
    assert "regdom" not in roots.wifi_country_file.read_text()  # the image's link resolves
    assert calls_of(log) == ["nmcli connection reload"]
    assert "another-key-1" not in roots.fleet_yaml.read_text()

    write_fleet(roots, enrollment_token=None, wifi=None)
    personaliser.apply(enrolled=True)
    assert not keyfile(roots).exists()
    assert calls_of(log) == ["nmcli connection reload"]


def test_missing_tools_are_tolerated(roots):
    write_fleet(roots)
    Personaliser(roots).apply(enrolled=False)
    assert roots.hostname_file.read_text() == "cam-07\n"
    assert keyfile(roots).exists()


def test_nothing_to_apply_without_fleet_yaml(roots):
    Personaliser(roots).apply(enrolled=False)
    assert not roots.hostname_file.exists() and not roots.nm_connections.exists()
    assert not roots.wifi_country_file.exists()


def test_a_broken_fleet_yaml_is_a_config_error(roots):
    roots.fleet_yaml.write_text("hostname: Not_Valid\n")
    with pytest.raises(ConfigError, match="fleet.yaml"):
        Personaliser(roots).apply(enrolled=False)


@pytest.mark.parametrize(
    ("ssid", "line"),
    [
        ("plain-net_5G", "ssid=plain-net_5G"),
        ("café;wifi", "ssid=99;97;102;195;169;59;119;105;102;105;"),
        ("12345", "ssid=49;50;51;52;53;"),
        (" edge", "ssid=32;101;100;103;101;"),
    ],
)
def test_ssids_are_written_unambiguously(ssid, line):
    assert f"\n{line}\n" in nm_keyfile(WiFi(ssid=ssid)).decode()


def test_an_open_network_has_no_security_section():
    text = nm_keyfile(WiFi(ssid="guest")).decode()
    assert "[wifi-security]" not in text
    assert f"uuid={CONNECTION_UUID}" in text


def test_the_agent_applies_fleet_yaml_and_then_strips_the_key(device, server):
    setup_device(device, server)
    first = yaml.safe_load(device.roots.fleet_yaml.read_text())
    first["wifi"] = {"ssid": "Shop", "psk": "wifi-secret-1", "country": "NL"}
    device.roots.fleet_yaml.write_text(yaml.safe_dump(first))
    agent = make_agent(device)
    agent.personaliser = Personaliser(device.roots)
    agent.cycle()
    assert device.roots.hostname_file.read_text() == "cam-07\n"
    assert "psk=wifi-secret-1" in keyfile(device.roots).read_text()
    assert server.devices  # enrolled in the same cycle
    text = device.roots.fleet_yaml.read_text()
    assert "wifi-secret-1" not in text and "enrol-me" not in text and "Shop" in text
    agent.cycle()
    assert "psk=wifi-secret-1" in keyfile(device.roots).read_text()
