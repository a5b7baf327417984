"""A device's node_exporter address reaches Prometheus only when it is the device's own
address or in an approved network (issue 15: any host:port was handed to Prometheus)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import ip_network

import pytest
from fastapi.testclient import TestClient

from fleetcore.wire import RegisterResponse
from overlord.app import create_app
from overlord.auth.models import KeyRole
from overlord.devices.exporter import decide
from tests.overlord.conftest import create_token, heartbeat, settings_for
from tests.overlord.tufrepo import Repo

DEVICE_ADDRESS = "10.20.0.7"
APPROVED = "192.168.50.0/24"


@dataclass
class Served:
    client: TestClient
    admin: dict[str, str]
    enrollment_token: str


@pytest.fixture
def served(database_url: str, repo: Repo) -> Iterator[Served]:
    """An Overlord that sees every request come from DEVICE_ADDRESS."""
    settings = settings_for(database_url, repo, exporter_networks=APPROVED)
    with TestClient(create_app(settings), client=(DEVICE_ADDRESS, 40000)) as client:
        yield Served(
            client=client,
            admin={"Authorization": f"Bearer {create_token(database_url, KeyRole.ADMIN)}"},
            enrollment_token=create_token(database_url, KeyRole.ENROLLMENT),
        )


def _enrol(served: Served, serial: str) -> tuple[str, dict[str, str]]:
    resp = served.client.post(
        "/api/v1/devices/register",
        json={
            "enrollment_token": served.enrollment_token,
            "hostname": "pi",
            "hardware": "pi4",
            "serial": serial,
            "image_version": "1.0.0",
            "booted_slot": "a",
        },
    )
    assert resp.status_code == 201, resp.text
    body = RegisterResponse.model_validate(resp.json())
    return body.device_id, {"Authorization": f"Bearer {body.device_token}"}


def _report(served: Served, address: str) -> tuple[str | None, list[str]]:
    """Heartbeat twice (the route, then the fast path once the token is cached, as on
    PostgreSQL); the stored address and the service discovery targets."""
    device_id, auth = _enrol(served, f"S-{address}")
    client, admin = served.client, served.admin
    for _ in range(2):
        resp = client.post(
            f"/api/v1/devices/{device_id}/heartbeat",
            json=heartbeat() | {"node_exporter": address},
            headers=auth,
        )
        assert resp.status_code == 204, resp.text
    stored = client.get(f"/api/v1/devices/{device_id}", headers=admin).json()["node_exporter"]
    groups = client.get("/api/v1/sd/prometheus", headers=admin).json()
    targets = [
        t
        for g in groups
        if g["labels"]["__meta_fleet_device_id"] == device_id
        for t in g["targets"]
    ]
    return stored, targets


@pytest.mark.parametrize("address", [f"{DEVICE_ADDRESS}:9100", "192.168.50.3:9100"])
def test_own_address_or_approved_network_is_exported(served: Served, address: str):
    assert _report(served, address) == (address, [address])


@pytest.mark.parametrize(
    "address",
    [
        "10.20.0.8:9100",  # another host on the device's network
        "127.0.0.1:9090",  # Prometheus itself
        "overlord:8000",  # a name: cannot be checked against the connecting address
        f"{DEVICE_ADDRESS}:22",  # below the port range
        "[fd00::1]:9100",
    ],
)
def test_any_other_target_is_not_exported_and_is_logged(
    served: Served, address: str, caplog: pytest.LogCaptureFixture
):
    with caplog.at_level(logging.WARNING, logger="overlord.devices.exporter"):
        assert _report(served, address) == (None, [])
    warnings = [r.getMessage() for r in caplog.records if address in r.getMessage()]
    # Once per device and address, not once per heartbeat.
    assert len(warnings) == 1 and "not exported" in warnings[0]


def test_rule():
    networks = [ip_network("10.8.0.0/16"), ip_network("fd00:8::/32")]

    def target(reported: str, client: str | None = "203.0.113.9") -> str | None:
        return decide(reported, client_host=client, networks=networks).target

    assert target("203.0.113.9:9100") == "203.0.113.9:9100"
    assert target("203.0.113.9:9100", "::ffff:203.0.113.9") == "203.0.113.9:9100"
    assert target("[2001:db8::5]:9100", "2001:db8::5") == "[2001:db8::5]:9100"
    assert target("[fd00:8::5]:9100") == "[fd00:8::5]:9100"
    assert target("10.8.3.4:65535") == "10.8.3.4:65535"
    assert target("203.0.113.10:9100") is None
    assert target("203.0.113.9:9100", None) is None
    assert target("203.0.113.9:9100", "unknown") is None
    assert target("203.0.113.9:1023") is None
    assert target("203.0.113.9:65536") is None
    assert target("203.0.113.9:09100") == "203.0.113.9:9100"
    assert target("127.0.0.1:9100", "127.0.0.1") is None
    assert target("169.254.169.254:1080", "169.254.169.254") is None
    assert target("2001:db8::5:9100", "2001:db8::5") is None  # IPv6 without brackets
    assert target("[10.8.0.1]:9100") is None
    assert target("node.example:9100") is None
