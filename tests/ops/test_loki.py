"""Loki's config. No Loki binary is packaged in Debian, so the settings the stack relies on are
checked against the compose mounts instead."""

from __future__ import annotations

from tests.ops.tools import DEPLOY_DIR, load_yaml

LOKI = DEPLOY_DIR / "loki" / "loki.yml"


def test_storage_is_in_the_mounted_volume():
    config = load_yaml(LOKI)
    compose = load_yaml(DEPLOY_DIR / "docker-compose.yml")["services"]["loki"]
    assert "loki-data:/loki" in compose["volumes"]
    assert "./loki/loki.yml:/etc/loki/loki.yml:ro" in compose["volumes"]
    assert compose["command"] == ["-config.file=/etc/loki/loki.yml"]
    assert config["common"]["path_prefix"] == "/loki"
    storage = config["common"]["storage"]["filesystem"]
    assert all(path.startswith("/loki/") for path in storage.values())
    assert config["compactor"]["working_directory"].startswith("/loki/")


def test_retention_is_enforced():
    config = load_yaml(LOKI)
    assert config["compactor"]["retention_enabled"] is True
    assert config["limits_config"]["retention_period"] == "720h"


def test_schema_is_tsdb_v13_single_tenant():
    config = load_yaml(LOKI)
    schema = config["schema_config"]["configs"][-1]
    assert (schema["store"], schema["schema"], schema["object_store"]) == (
        "tsdb",
        "v13",
        "filesystem",
    )
    # Tenancy is not used: nginx authenticates the devices' push, the rest is internal.
    assert config["auth_enabled"] is False
    assert config["server"]["http_listen_port"] == 3100
