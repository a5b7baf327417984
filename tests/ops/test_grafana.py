"""Grafana provisioning: datasources, dashboard providers and the dashboard JSON itself."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.ops.contract import (
    dashboard_prometheus_queries,
    iter_panels,
    load_dashboards,
)
from tests.ops.tools import DEPLOY_DIR, find_tool, load_yaml, run_tool

PROVISIONING = DEPLOY_DIR / "grafana" / "provisioning"
REQUIRED_DASHBOARDS = {"fleet-overview", "fleet-versions", "fleet-rollouts", "device-detail"}
# What Grafana substitutes before a query reaches Prometheus.
_BUILTIN_VARIABLES = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def datasource_uids() -> dict[str, str]:
    sources = load_yaml(PROVISIONING / "datasources" / "datasources.yml")["datasources"]
    return {source["uid"]: source["type"] for source in sources}


def test_datasources_are_provisioned():
    uids = datasource_uids()
    assert uids == {"prometheus": "prometheus", "loki": "loki", "alertmanager": "alertmanager"}
    sources = load_yaml(PROVISIONING / "datasources" / "datasources.yml")["datasources"]
    assert [s["uid"] for s in sources if s.get("isDefault")] == ["prometheus"]


def test_dashboard_provider_points_at_the_mounted_folder():
    compose = load_yaml(DEPLOY_DIR / "docker-compose.yml")
    mounts = compose["services"]["grafana"]["volumes"]
    provider = load_yaml(PROVISIONING / "dashboards" / "dashboards.yml")["providers"][0]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts


def test_required_dashboards_exist_with_unique_uids():
    dashboards = load_dashboards()
    uids = [d["uid"] for d in dashboards.values()]
    assert len(uids) == len(set(uids))
    assert set(uids) >= REQUIRED_DASHBOARDS
    for file_name, dashboard in dashboards.items():
        assert file_name == f"{dashboard['uid']}.json"
        assert dashboard["title"] and dashboard["schemaVersion"] >= 36
        assert "metrica-fleet" in dashboard["tags"]


def test_panels_are_laid_out_and_use_provisioned_datasources():
    uids = datasource_uids()
    for file_name, dashboard in load_dashboards().items():
        ids = [panel["id"] for panel in iter_panels(dashboard["panels"])]
        assert len(ids) == len(set(ids)), f"{file_name}: duplicate panel ids"
        for panel in iter_panels(dashboard["panels"]):
            grid = panel["gridPos"]
            assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
            if panel["type"] == "row":
                continue
            sources = [panel["datasource"]] + [t["datasource"] for t in panel["targets"]]
            for source in sources:
                assert uids.get(source["uid"]) == source["type"], f"{file_name}: {panel['title']}"
            assert all(t.get("expr") for t in panel["targets"]), f"{file_name}: {panel['title']}"


def test_queries_use_only_defined_variables():
    for file_name, dashboard in load_dashboards().items():
        defined = {v["name"] for v in dashboard["templating"]["list"]} | set(_BUILTIN_VARIABLES)
        for panel in iter_panels(dashboard["panels"]):
            for target in panel.get("targets", []):
                for match in _VARIABLE.finditer(target["expr"]):
                    name = match.group(1) or match.group(2)
                    assert name in defined, f"{file_name}: {panel['title']} uses ${name}"


def substitute_variables(expr: str) -> str:
    """A query as Prometheus would receive it, with a sample value for each variable."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return _BUILTIN_VARIABLES.get(name, "x")

    return _VARIABLE.sub(value, expr)


def test_dashboard_queries_are_valid_promql(tmp_path: Path):
    # promtool has no expression checker; every query becomes a recording rule it parses.
    rules = []
    for file_name, dashboard in load_dashboards().items():
        for index, (_, expr) in enumerate(dashboard_prometheus_queries(dashboard)):
            record = f"check:{file_name.removesuffix('.json').replace('-', '_')}:{index}"
            rules.append({"record": record, "expr": substitute_variables(expr)})
    assert len(rules) > 20
    rule_file = tmp_path / "dashboards.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = run_tool([find_tool("promtool"), "check", "rules", rule_file])
    assert result.returncode == 0, result.stdout + result.stderr


def test_invalid_promql_is_caught_by_the_same_check(tmp_path: Path):
    rule_file = tmp_path / "bad.yml"
    bad = {"record": "check:bad", "expr": substitute_variables('sum(rate(up{job="$job"}[5m])')}
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "bad", "rules": [bad]}]}))
    result = run_tool([find_tool("promtool"), "check", "rules", rule_file])
    assert result.returncode != 0


def test_device_detail_shows_the_device_logs():
    dashboard = load_dashboards()["device-detail.json"]
    logs = [p for p in iter_panels(dashboard["panels"]) if p["type"] == "logs"]
    assert logs and logs[0]["targets"][0]["expr"] == '{device_id="$device"}'
