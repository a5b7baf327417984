"""Bundle validation: the known-good fixtures and shipped roles pass, every known-bad one fails
with its own message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from fleetcore.rolebundle.bundle import load_bundle
from fleetcore.rolebundle.errors import BundleError

from .helpers import BAD, GOOD, REPO, make_bundle

EXPECTED: dict[str, str] = yaml.safe_load((BAD / "expected.yaml").read_text())
SHIPPED = sorted(p.parent for p in (REPO / "roles").glob("*/role.yaml"))


def test_good_fixture_passes():
    bundle = load_bundle(GOOD)
    assert bundle.spec.name == "webapp"
    assert bundle.services == ["web"]


def test_every_bad_fixture_is_listed():
    on_disk = {p.name for p in BAD.iterdir() if p.is_dir()}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_bad_fixture_rejected_with_its_message(case):
    with pytest.raises(BundleError) as caught:
        load_bundle(BAD / case)
    assert EXPECTED[case] in str(caught.value)
    assert "\n" not in str(caught.value)


def test_fifo_rejected(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    os.mkfifo(bundle / "config" / "pipe")
    with pytest.raises(BundleError, match="device node, fifo or socket"):
        load_bundle(bundle)


def test_safe_mode_bundle_passes():
    assert load_bundle(REPO / "safe-mode").spec.name == "safe-mode"


def test_all_five_roles_are_shipped():
    names = {p.name for p in SHIPPED}
    assert {"camera-single", "camera-dual", "zigbee-hub", "audio-player", "system"} <= names


@pytest.mark.parametrize("role", SHIPPED, ids=lambda p: p.name)
def test_shipped_role_passes(role: Path):
    bundle = load_bundle(role)
    assert bundle.spec.name == role.name
    assert (role / "README.md").is_file()


def test_justified_privileges_pass(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    role = (bundle / "role.yaml").read_text()
    (bundle / "role.yaml").write_text(
        role.replace(
            "limits:\n",
            "privileges:\n"
            "  - service: web\n    kind: host-pid\n"
            "    justification: reads every process of the host for its metrics\n"
            "  - service: web\n    kind: host-mount\n    path: /var/log\n"
            "    justification: ships the host's logs to Loki, read-only\n"
            "limits:\n",
        )
    )
    compose = (bundle / "compose.yaml").read_text()
    (bundle / "compose.yaml").write_text(
        compose.replace(
            "    restart: unless-stopped\n",
            "    restart: unless-stopped\n    pid: host\n",
        ).replace('"./config:/config:ro"', '"./config:/config:ro"\n      - "/var/log:/logs:ro"')
    )
    assert load_bundle(bundle).spec.privileges[1].path == "/var/log"


def test_host_mount_must_be_read_only(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    role = (bundle / "role.yaml").read_text()
    (bundle / "role.yaml").write_text(
        role.replace(
            "limits:\n",
            "privileges:\n  - service: web\n    kind: host-mount\n    path: /var/log\n"
            "    justification: ships the host's logs to Loki, read-only\nlimits:\n",
        )
    )
    compose = (bundle / "compose.yaml").read_text()
    (bundle / "compose.yaml").write_text(
        compose.replace('"./config:/config:ro"', '"./config:/config:ro"\n      - "/var/log:/logs"')
    )
    with pytest.raises(BundleError, match="must be read-only"):
        load_bundle(bundle)
