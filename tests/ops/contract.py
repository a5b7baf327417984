"""The metric names alert rules and dashboards may use: docs/metrics.md plus device exporters."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.ops.promql_names import metric_names, variable_query_names
from tests.ops.tools import DEPLOY_DIR, REPO_ROOT, load_yaml

METRICS_DOC = REPO_ROOT / "docs" / "metrics.md"
DASHBOARDS_DIR = DEPLOY_DIR / "grafana" / "dashboards"
RULE_FILES = sorted((DEPLOY_DIR / "prometheus" / "rules").glob("*.yml"))

# Node exporter (on devices and the Overlord host) names the stack reads, from node exporter's
# default collectors (cpu, meminfo, filesystem, loadavg, netdev, stat, thermal_zone).
NODE_EXPORTER_NAMES = frozenset(
    {
        "node_boot_time_seconds",
        "node_cpu_seconds_total",
        "node_filesystem_avail_bytes",
        "node_filesystem_readonly",
        "node_filesystem_size_bytes",
        "node_load1",
        "node_memory_MemAvailable_bytes",
        "node_memory_MemTotal_bytes",
        "node_network_receive_bytes_total",
        "node_network_transmit_bytes_total",
        "node_thermal_zone_temp",
    }
)
# Written by Prometheus itself for every target.
PROMETHEUS_NAMES = frozenset({"up"})

_ROW = re.compile(r"^\|\s*`(?P<name>[a-z_:][a-z0-9_:]*)`\s*\|\s*(?P<type>[a-z]+)")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def documented_metrics(doc: Path = METRICS_DOC) -> dict[str, str]:
    """Name -> type of each row of the contract table in docs/metrics.md."""
    rows = {}
    for line in doc.read_text().splitlines():
        match = _ROW.match(line)
        if match:
            rows[match.group("name")] = match.group("type")
    return rows


def exposed_metrics(exposition: str) -> dict[str, str]:
    """Name -> type of each metric family in a /metrics answer (Prometheus text format).

    prometheus_client names a counter family without its ``_total``; the contract names the
    sample, so counters are reported with the suffix.
    """
    families = {}
    for family in text_string_to_metric_families(exposition):
        name = f"{family.name}_total" if family.type == "counter" else family.name
        families[name] = family.type
    return families


def allowed(name: str, documented: dict[str, str]) -> bool:
    if name in documented or name in NODE_EXPORTER_NAMES or name in PROMETHEUS_NAMES:
        return True
    for suffix in _HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and documented.get(base) == "histogram":
            return True
    return False


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def datasource_type(target: dict[str, Any], panel: dict[str, Any]) -> str:
    source = target.get("datasource") or panel.get("datasource") or {}
    return str(source.get("type", ""))


def dashboard_prometheus_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every Prometheus target of a dashboard."""
    for panel in iter_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            if datasource_type(target, panel) == "prometheus":
                yield f"panel {panel['title']!r} {target['refId']}", target["expr"]


def dashboard_variable_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query" and variable["datasource"]["type"] == "prometheus":
            query = variable["query"]
            yield (
                f"variable {variable['name']}",
                query["query"] if isinstance(query, dict) else query,
            )


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {
        path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS_DIR.glob("*.json"))
    }


def used_metrics() -> dict[str, set[str]]:
    """Metric name -> the places (file and rule, panel or variable) that read it."""
    used: dict[str, set[str]] = {}
    for rule_file in RULE_FILES:
        for group in load_yaml(rule_file)["groups"]:
            for rule in group["rules"]:
                where = f"{rule_file.name}: {rule.get('alert') or rule.get('record')}"
                for name in metric_names(rule["expr"]):
                    used.setdefault(name, set()).add(where)
    for file_name, dashboard in load_dashboards().items():
        for where, expr in dashboard_prometheus_queries(dashboard):
            for name in metric_names(expr):
                used.setdefault(name, set()).add(f"{file_name}: {where}")
        for where, query in dashboard_variable_queries(dashboard):
            for name in variable_query_names(query):
                used.setdefault(name, set()).add(f"{file_name}: {where}")
    return used
