"""nginx config: `nginx -t` with a throwaway self-signed certificate, routes and limits."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.ops.tools import DEPLOY_DIR, find_tool, make_self_signed_cert, run_tool

CONF = DEPLOY_DIR / "nginx" / "nginx.conf"


@pytest.fixture(scope="module")
def prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway nginx prefix laid out like /etc/nginx in the container."""
    root = tmp_path_factory.mktemp("nginx")
    (root / "tls").mkdir()
    (root / "htpasswd").mkdir()
    (root / "logs").mkdir()
    shutil.copy(CONF, root / "nginx.conf")
    make_self_signed_cert(root / "tls")
    return root


def nginx_test(prefix: Path, conf: Path) -> tuple[int, str]:
    result = run_tool(
        [find_tool("nginx"), "-t", "-p", prefix, "-c", conf, "-g", f"pid {prefix}/nginx.pid;"]
    )
    return result.returncode, result.stderr


def test_config_passes_nginx_t(prefix: Path):
    code, output = nginx_test(prefix, prefix / "nginx.conf")
    assert code == 0, output
    assert "test is successful" in output


def test_missing_certificate_fails_nginx_t(prefix: Path, tmp_path: Path):
    bare = tmp_path / "nginx.conf"
    shutil.copy(CONF, bare)
    code, output = nginx_test(prefix, bare)
    assert code != 0
    assert "fullchain.pem" in output


def test_routes_and_limits():
    text = CONF.read_text()
    routes = ("/api/", "/tuf/", "/dashboard", "/static/", "/grafana/", "= /health")
    for route in (*routes, "= /loki/api/v1/push"):
        assert f"location {route} " in text, route
    assert re.search(r"listen 443 ssl", text)
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in text
    assert text.count("limit_req zone=") >= 5
    assert "return 308 https://" in text


def test_metrics_are_not_public():
    text = CONF.read_text()
    assert "/metrics" not in re.sub(r"#.*", "", text)
