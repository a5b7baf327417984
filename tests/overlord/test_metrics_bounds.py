"""/metrics stays small and valid whatever devices report (issue 15: a 100 MB role name made
/metrics 105 MB): label values bounded in length and charset, series capped per family."""

from __future__ import annotations

import re
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from fleetcore.layout import Slot
from fleetcore.wire import RoleStatus
from overlord.db import make_engine, make_sessionmaker, unit_of_work
from overlord.devices.models import AdminStatus, Device
from overlord.metrics.bounded import MAX_LABEL_CHARS, OTHER, CountFamily, label_value
from overlord.rollouts.models import DeploymentRollout, ReleaseKind, RolloutState
from tests.overlord.conftest import Overlord, heartbeat, make_overlord
from tests.overlord.tufrepo import Repo

# Stated bounds for the default cap (OVERLORD_METRICS_MAX_SERIES=500).
MAX_SERIES = 500
MAX_SCRAPE_BYTES = 1 << 20
_LABEL = re.compile(rf"^[A-Za-z0-9._:+~-]{{0,{MAX_LABEL_CHARS}}}$")
_HOSTILE = 'x"\\\n}{ \u00e9\U0001f600\x00#'


def _insert(overlord: Overlord, *, devices: int, rollouts: int, huge_role_bytes: int) -> None:
    """Rows as a release without the schema bounds, or a hand edit, could have left them."""
    engine = make_engine(overlord.settings.database_url)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            for i in range(devices):
                name = f"role{i}-" + _HOSTILE.replace("\x00", "") * 200
                session.add(
                    Device(
                        id=f"dev-bulk{i}",
                        hostname=f"h{i}",
                        hardware="pi4",
                        admin_status=AdminStatus.ACTIVE,
                        image_version=f'9.{i}"\\{{ x',
                        booted_slot=Slot.A,
                        roles=[
                            {"name": name, "version": f"v{i}\n" * 50, "health": f"ok{i}"},
                            {"name": "camera", "version": "2.0.0", "health": "healthy"},
                        ],
                    )
                )
            session.add(
                Device(
                    id="dev-huge",
                    hostname="huge",
                    hardware="pi4",
                    admin_status=AdminStatus.ACTIVE,
                    image_version="1.0.0",
                    booted_slot=Slot.A,
                    roles=[{"name": "r" * huge_role_bytes, "version": "1", "health": "healthy"}],
                )
            )
            for i in range(rollouts):
                session.add(
                    DeploymentRollout(
                        name=f"{i:04d}" + "n" * 96,
                        kind=ReleaseKind.ROLE,
                        role_name="camera",
                        version="2.0.0",
                        target="roles/camera-2.0.0.tar",
                        canary_devices=1,
                        stages=[100],
                        success_window_s=60,
                        failure_threshold=0.05,
                        state=RolloutState.RUNNING if i % 3 == 0 else RolloutState.COMPLETED,
                    )
                )
    finally:
        engine.dispose()


def _series(text: str) -> dict[str, list[dict[str, str]]]:
    families: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            families.setdefault(sample.name, []).append(sample.labels)
    return families


def test_metrics_stay_small_whatever_devices_report(overlord: Overlord):
    devices, rollouts = 1200, 150
    _insert(overlord, devices=devices, rollouts=rollouts, huge_role_bytes=20 << 20)
    resp = overlord.client.get("/metrics")
    assert resp.status_code == 200
    assert len(resp.content) < MAX_SCRAPE_BYTES, len(resp.content)
    families = _series(resp.text)
    for name, samples in families.items():
        assert len(samples) <= MAX_SERIES, name
        assert len({tuple(sorted(s.items())) for s in samples}) == len(samples), name
        for labels in samples:
            for value in labels.values():
                assert value == OTHER or _LABEL.match(value), (name, value[:200])
    totals = Counter[str]()
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            totals[sample.name] += int(sample.value) if family.type == "gauge" else 0
    # Folding into (other) keeps the totals: every device and role instance is counted.
    assert totals["fleet_devices"] == devices + 1
    assert totals["fleet_device_roles"] == 2 * devices + 1
    assert {"image_version": OTHER, "status": "offline"} in families["fleet_devices"]
    dropped = {s["metric"]: s for s in families["fleet_metric_series_dropped"]}
    assert set(dropped) >= {"fleet_devices", "fleet_device_roles", "fleet_rollout_info"}
    exported_rollouts = families["fleet_rollout_info"]
    assert len(exported_rollouts) == MAX_SERIES // 5
    # Every rollout still running, then the newest finished ones.
    running = [s for s in exported_rollouts if s["state"] == "running"]
    assert len(running) == rollouts // 3
    finished = sorted(s["rollout"][:4] for s in exported_rollouts if s["state"] == "completed")
    newest = sorted(f"{i:04d}" for i in range(rollouts) if i % 3)[-len(finished) :]
    assert finished == newest


def test_metrics_output_parses_as_prometheus_text(overlord: Overlord):
    _insert(overlord, devices=3, rollouts=2, huge_role_bytes=1000)
    text = overlord.client.get("/metrics").text
    families = _series(text)
    assert families["fleet_devices"]
    assert len(families["fleet_device_roles"]) == 3 + 1 + 1
    for labels in families["fleet_device_roles"]:
        assert _LABEL.match(labels["role"]) and len(labels["role"]) <= MAX_LABEL_CHARS
    assert all(
        s["metric"] and s["metric"].startswith("fleet_")
        for s in families["fleet_metric_series_dropped"]
    )


def test_http_methods_a_client_invents_share_one_series(overlord: Overlord):
    for i in range(40):
        overlord.client.request(f"X{i}METHOD", "/health")
    families = _series(overlord.client.get("/metrics").text)
    methods = {s["method"] for s in families["fleet_http_request_duration_seconds_count"]}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", OTHER}
    assert OTHER in methods


@given(st.text(max_size=400))
def test_label_values_are_short_and_plain(raw: str):
    value = label_value(raw)
    assert _LABEL.match(value)
    if value == raw:
        assert len(raw) <= MAX_LABEL_CHARS and re.fullmatch(r"[A-Za-z0-9._:+-]*", raw)


@given(st.text(max_size=300), st.text(max_size=300))
def test_different_values_never_export_as_one(a: str, b: str):
    if a != b:
        assert label_value(a) != label_value(b)


def test_valid_names_export_unchanged():
    for name in ("camera", "1.4.0", "zigbee_hub-2.10.3", "r" * MAX_LABEL_CHARS):
        assert label_value(name) == name


def test_count_family_folds_the_smallest_into_other():
    family = CountFamily("f", "doc", ["value", "status"], max_series=4, kept=["status"])
    for i in range(10):
        family.add([f"v{i}", "online"], count=10 - i)
    family.add(["v0", "offline"], count=3)
    exported = {tuple(sample.labels.values()): sample.value for sample in family.family().samples}
    assert len(exported) == 4
    assert exported[("v0", "online")] == 10
    assert sum(exported.values()) == sum(range(1, 11)) + 3
    assert (OTHER, "online") in exported and (OTHER, "offline") in exported
    assert family.dropped == 9


def test_heartbeats_naming_many_roles_fold_past_the_cap(database_url: str, repo: Repo):
    """The live path: devices enrol and heartbeat schema-valid, distinct, long role names."""
    overlord = make_overlord(database_url, repo, metrics_max_series=20)
    with overlord.client:
        for d in range(15):
            device_id, auth = overlord.enroll(f"M{d}")
            roles = [
                RoleStatus.model_validate(
                    {
                        "name": f"r{d}-{r}-" + "x" * 58,
                        "version": f"{d}.{r}.123456789",
                        "health": "healthy",
                    }
                )
                for r in range(4)
            ]
            resp = overlord.client.post(
                f"/api/v1/devices/{device_id}/heartbeat", json=heartbeat(roles=roles), headers=auth
            )
            assert resp.status_code == 204, resp.text
        families = _series(overlord.client.get("/metrics").text)
    roles_exported = families["fleet_device_roles"]
    assert len(roles_exported) == 20
    assert {"role": OTHER, "version": OTHER, "health": OTHER} in roles_exported
    dropped = {s["metric"]: s for s in families["fleet_metric_series_dropped"]}
    assert "fleet_device_roles" in dropped
