"""The exported metrics are exactly the contract in docs/metrics.md."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from fleetcore.wire import EventKind, RoleStatus
from tests.overlord.conftest import Overlord, events, heartbeat

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def _documented() -> dict[str, set[str]]:
    names = {}
    for line in DOC.read_text().splitlines():
        match = re.match(r"^\| `(fleet_[a-z_]+)` \| (\w+)[^|]*\| ([^|]*)\|", line)
        if match:
            labels = set(re.findall(r"`([a-z_]+)`", match.group(3).split("(")[0])) | set(
                re.findall(r"`([a-z_]+)`(?: \()", match.group(3))
            )
            names[match.group(1)] = labels
    return names


def test_exported_names_and_labels_match_the_contract(overlord: Overlord):
    device_id, auth = overlord.enroll("M1")
    camera = RoleStatus.model_validate({"name": "camera", "version": "2.0.0", "health": "healthy"})
    overlord.client.post(
        f"/api/v1/devices/{device_id}/heartbeat", json=heartbeat(roles=[camera]), headers=auth
    )
    overlord.client.post(
        f"/api/v1/devices/{device_id}/events",
        json=events((1, EventKind.ROLLBACK, "1.1.0", "x")),
        headers=auth,
    )
    overlord.client.post(
        "/api/v1/rollouts",
        json={"name": "m", "kind": "os", "version": "1.1.0"},
        headers=overlord.as_admin(),
    )
    resp = overlord.client.get("/metrics")
    assert resp.status_code == 200
    exported: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            exported.setdefault(family.name, set()).update(
                k for k in sample.labels if k not in {"le"}
            )
    documented = _documented()
    # prometheus_client strips the _total suffix from counter family names.
    exported_names = {n if n + "_total" not in documented else n + "_total" for n in exported}
    assert exported_names == set(documented)
    for name, labels in exported.items():
        key = name if name in documented else name + "_total"
        assert labels == documented[key], name
    assert 'fleet_devices{image_version="1.0.0",status="online"} 1.0' in resp.text
    assert 'fleet_update_outcomes_total{kind="os",outcome="rolled_back"} 1.0' in resp.text
    assert "fleet_heartbeats_total 1.0" in resp.text
    assert 'fleet_device_roles{health="healthy",role="camera",version="2.0.0"} 1.0' in resp.text
    assert 'route="/api/v1/devices/{device_id}/heartbeat"' in resp.text
    assert (
        'fleet_rollout_info{kind="os",release="os-1.1.0",rollout="m",state="running"} 1.0'
        in resp.text
    )
    assert 'fleet_tuf_metadata_expiry_timestamp_seconds{role="timestamp"}' in resp.text


def test_health(overlord: Overlord):
    assert overlord.client.get("/health").json()["database"] == "ok"
