from __future__ import annotations

import os

import pytest

from updater.config import CheckLevel, FirmwareBackend, load_config
from updater.errors import ConfigError
from updater.firstboot import load_firstboot, move_secrets
from updater.paths import Roots


@pytest.fixture
def roots(tmp_path):
    roots = Roots(root=tmp_path / "root", data=tmp_path / "data", boot_config=tmp_path / "cfg")
    for path in (roots.etc, roots.fleet, roots.boot_config):
        path.mkdir(parents=True)
    return roots


FLEET_YAML = """\
overlord_url: https://overlord.example
enrollment_token: secret-token
hostname: cam-07
wifi: {ssid: shop, psk: correcthorse, country: DE}
"""


def test_layers_override_in_order(roots):
    roots.image_config.write_text(
        "firmware: {backend: simulated}\nhealth: {docker: wanted, deadline_s: 100}\n"
        "overlord_url: https://image.example\n"
    )
    roots.data_config.write_text("health: {deadline_s: 50}\n")
    roots.fleet_yaml.write_text(FLEET_YAML)
    config = load_config(roots)
    assert config.firmware.backend is FirmwareBackend.SIMULATED
    assert config.health.docker is CheckLevel.WANTED
    assert config.health.deadline_s == 50  # /data overrides the image, key by key
    assert config.overlord_url == "https://overlord.example"  # fleet.yaml wins
    assert config.enrollment_token == "secret-token"
    assert config.release_url == "https://overlord.example/tuf"


def test_unknown_key_is_rejected_naming_the_file(roots):
    roots.data_config.write_text("health: {deadline: 5}\n")
    with pytest.raises(ConfigError, match=r"health\.deadline") as err:
        load_config(roots)
    assert str(roots.data_config) in (err.value.hint or "")


def test_invalid_enum_is_rejected(roots):
    roots.image_config.write_text("firmware: {backend: uboot}\n")
    with pytest.raises(ConfigError, match=r"firmware\.backend"):
        load_config(roots)


def test_defaults_without_any_file(roots):
    config = load_config(roots)
    assert config.firmware.backend is FirmwareBackend.TRYBOOT
    assert 30 <= config.poll_min_s <= config.poll_max_s <= 120


def test_fleet_yaml_is_strict(roots):
    roots.fleet_yaml.write_text(FLEET_YAML + "extra: 1\n")
    with pytest.raises(ConfigError, match="extra"):
        load_config(roots)


def test_secrets_move_from_fat_to_data(roots):
    roots.fleet_yaml.write_text(FLEET_YAML)
    move_secrets(roots.fleet_yaml, roots.firstboot_copy)
    on_fat = load_firstboot(roots.fleet_yaml)
    assert on_fat.wifi is not None
    assert on_fat.enrollment_token is None and on_fat.wifi.psk is None
    assert "secret-token" not in roots.fleet_yaml.read_text()
    kept = load_firstboot(roots.firstboot_copy)
    assert kept.wifi is not None
    assert kept.enrollment_token == "secret-token" and kept.wifi.psk == "correcthorse"
    assert roots.firstboot_copy.stat().st_mode & 0o777 == 0o600
    assert load_config(roots).hostname == "cam-07"
    move_secrets(roots.fleet_yaml, roots.firstboot_copy)  # idempotent
    assert load_firstboot(roots.firstboot_copy).enrollment_token == "secret-token"


def test_the_replaced_fleet_yaml_is_overwritten_in_place_first(roots):
    """A rename frees the old fleet.yaml's clusters without clearing them, so the raw card
    would keep the token and the Wi-Fi key (ADR 0076): the old file itself, seen here through
    a second link to it, must hold the stripped YAML by then."""
    roots.fleet_yaml.write_text(FLEET_YAML)
    old = roots.fleet_yaml.with_name("old-link")
    os.link(roots.fleet_yaml, old)

    move_secrets(roots.fleet_yaml, roots.firstboot_copy)

    scrubbed = old.read_bytes()
    assert len(scrubbed) == len(FLEET_YAML)
    assert b"secret-token" not in scrubbed and b"correcthorse" not in scrubbed
    assert load_firstboot(old) == load_firstboot(roots.fleet_yaml)
