"""Prometheus config and alert rules, checked and unit-tested with Debian's promtool."""

from __future__ import annotations

from collections import defaultdict

from tests.ops.tools import DEPLOY_DIR, FIXTURES, find_tool, load_yaml, run_tool

PROMETHEUS_DIR = DEPLOY_DIR / "prometheus"
RULES = PROMETHEUS_DIR / "rules" / "fleet.yml"
RULE_TESTS = PROMETHEUS_DIR / "tests" / "fleet_test.yml"
REQUIRED_ALERTS = {
    "DeviceOffline",
    "UpdateFailureRateHigh",
    "RolloutHalted",
    "BlastRadius",
    "DiskAlmostFull",
    "OverlordDown",
    "TUFMetadataExpiringSoon",
}


def alert_names() -> set[str]:
    rules = load_yaml(RULES)
    return {
        rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule
    }


def test_config_is_valid():
    result = run_tool(
        [find_tool("promtool"), "check", "config", "prometheus.yml"], cwd=PROMETHEUS_DIR
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_are_valid():
    result = run_tool([find_tool("promtool"), "check", "rules", RULES])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_broken_rule_is_rejected():
    result = run_tool([find_tool("promtool"), "check", "rules", FIXTURES / "bad_rules.yml"])
    assert result.returncode != 0


def test_rule_unit_tests_pass():
    result = run_tool(
        [find_tool("promtool"), "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_wrong_expectation_fails_the_rule_tests():
    result = run_tool([find_tool("promtool"), "test", "rules", "bad_rules_test.yml"], cwd=FIXTURES)
    assert result.returncode != 0
    assert "RolloutHalted" in result.stdout + result.stderr


def test_every_required_alert_exists():
    assert alert_names() >= REQUIRED_ALERTS


def test_every_alert_has_firing_and_quiet_cases():
    cases: dict[str, set[str]] = defaultdict(set)
    for test in load_yaml(RULE_TESTS)["tests"]:
        for check in test.get("alert_rule_test", []):
            cases[check["alertname"]].add("firing" if check["exp_alerts"] else "quiet")
    missing = {name: {"firing", "quiet"} - cases[name] for name in alert_names()}
    assert {name: kinds for name, kinds in missing.items() if kinds} == {}


def test_every_alert_has_severity_and_runbook():
    operations = (DEPLOY_DIR.parents[1] / "docs" / "operations.md").read_text().lower()
    for group in load_yaml(RULES)["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
            anchor = rule["annotations"]["runbook"].split("#", 1)[1]
            assert f"### {anchor}" in operations, f"no runbook heading for {rule['alert']}"


def test_device_targets_come_from_the_overlord_service_discovery():
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    sd = jobs["fleet-devices"]["http_sd_configs"][0]
    assert sd["url"] == "http://overlord:8000/api/v1/sd/prometheus"
    assert sd["authorization"]["credentials_file"].startswith("/etc/prometheus/secrets/")
    assert jobs["overlord"]["dns_sd_configs"][0]["names"] == ["overlord"]
