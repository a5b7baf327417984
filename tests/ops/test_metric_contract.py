"""Alert rules and dashboards read only metrics that exist: docs/metrics.md and the exporters."""

from __future__ import annotations

from tests.ops.contract import allowed, documented_metrics, exposed_metrics, used_metrics
from tests.ops.tools import FIXTURES


def test_contract_table_is_read():
    documented = documented_metrics()
    assert documented["fleet_devices"] == "gauge"
    assert documented["fleet_http_request_duration_seconds"] == "histogram"
    assert len(documented) >= 10


def test_rules_and_dashboards_use_only_documented_metrics():
    documented = documented_metrics()
    used = used_metrics()
    assert "fleet_devices" in used
    unknown = {name: sorted(where) for name, where in used.items() if not allowed(name, documented)}
    assert unknown == {}


def test_every_documented_metric_is_shown_somewhere():
    used = used_metrics()
    documented = documented_metrics()
    shown = {
        name
        for name in documented
        if name in used or any(f"{name}{suffix}" in used for suffix in ("_bucket", "_count"))
    }
    assert shown == set(documented)


def test_histogram_series_are_allowed_only_for_histograms():
    documented = {"fleet_latency_seconds": "histogram", "fleet_things": "gauge"}
    assert allowed("fleet_latency_seconds_bucket", documented)
    assert not allowed("fleet_things_count", documented)


def test_an_undocumented_metric_is_reported():
    documented = documented_metrics(FIXTURES / "metrics_missing_devices.md")
    assert not allowed("fleet_devices", documented)
    assert allowed("node_load1", documented)


def test_exposition_matches_the_contract():
    # The same check runs against a live Overlord's /metrics once it serves one; this sample
    # pins the parsing (counter suffixes, histogram families) it relies on.
    exposed = exposed_metrics((FIXTURES / "overlord_metrics.txt").read_text())
    assert exposed == documented_metrics()


def test_exposition_missing_a_metric_is_caught():
    text = (FIXTURES / "overlord_metrics.txt").read_text()
    partial = "\n".join(line for line in text.splitlines() if "fleet_build_info" not in line)
    assert set(documented_metrics()) - set(exposed_metrics(partial)) == {"fleet_build_info"}
