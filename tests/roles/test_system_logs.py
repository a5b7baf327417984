"""Device logs reach the fleet's Loki: the `system` role's Promtail through the shipped nginx.

No promtail or loki binary is packaged on PyPI, Debian or npm, so this renders the role's own
.env and Promtail config as the device does (``-config.expand-env``), sends the push Promtail
makes from that config (Loki's JSON push API, the same labels and basic auth) through the
shipped nginx config, and a receiver implementing ``POST /loki/api/v1/push`` checks both.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from fleetcore.rolebundle import envfile
from tests.ops.nginxrun import Echo, run_nginx, serve_upstreams

pytestmark = pytest.mark.integration

SYSTEM = Path(__file__).resolve().parents[2] / "roles" / "system"
DASHBOARD = SYSTEM.parents[1] / "overlord" / "deploy" / "grafana" / "dashboards"
RECEIVED: list[tuple[dict[str, str], list[list[str]], str | None]] = []


class LokiPush(BaseHTTPRequestHandler):
    """Loki's push endpoint: JSON streams with labels; records what arrived and its auth."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/loki/api/v1/push" or self.headers.get("Content-Type") != (
            "application/json"
        ):
            self.send_response(400)
            self.end_headers()
            return
        for stream in json.loads(body)["streams"]:
            RECEIVED.append((stream["stream"], stream["values"], self.headers.get("Authorization")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, int]]:
    with serve_upstreams({"overlord": Echo, "grafana": Echo, "loki": LokiPush}) as ports:
        yield ports


@pytest.fixture(scope="module")
def nginx(
    tmp_path_factory: pytest.TempPathFactory, upstreams: dict[str, int]
) -> Iterator[tuple[str, str, Path]]:
    with run_nginx(tmp_path_factory.mktemp("nginx-logs"), upstreams) as urls:
        yield urls


def expand(text: str, env: dict[str, str]) -> str:
    """Promtail's -config.expand-env: ${VAR} from the environment (compose's env_file)."""
    return re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], text)


def rendered_promtail(base: str, device_id: str) -> dict[str, Any]:
    config = {"loki_url": f"{base}/loki/api/v1/push", "loki_password": "s3cret"}
    text = envfile.render(
        (SYSTEM / ".env.template").read_text(),
        context={"config": config},
        owned={"DEVICE_ID": device_id, "ROLE_NAME": "system"},
    )
    env = dict(line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")
    return yaml.safe_load(expand((SYSTEM / "config" / "promtail.yaml").read_text(), env))


def test_promtail_labels_what_grafana_queries():
    config = rendered_promtail("https://overlord.test", "pi-0042")
    client = config["clients"][0]
    assert client["external_labels"] == {"device_id": "pi-0042"}
    assert client["basic_auth"] == {"username": "fleet-device", "password": "s3cret"}
    dashboards = " ".join(path.read_text() for path in DASHBOARD.glob("*.json"))
    assert "device_id" in dashboards and '{device="' not in dashboards


def test_the_push_promtail_makes_passes_nginx_and_reaches_loki(nginx):
    base, _, cert = nginx
    client = rendered_promtail(base, "pi-0042")["clients"][0]
    labels = {**client["external_labels"], "job": "systemd-journal"}
    push = {"streams": [{"stream": labels, "values": [[str(time.time_ns()), "boot ok"]]}]}
    trust = ssl.create_default_context(cafile=str(cert))
    auth = (client["basic_auth"]["username"], client["basic_auth"]["password"])
    with httpx.Client(verify=trust, timeout=10) as http:
        assert http.post(client["url"], json=push).status_code == 401
        answer = http.post(client["url"], json=push, auth=auth)
    assert answer.status_code == 204
    token = base64.b64encode(b"fleet-device:s3cret").decode()
    received = [entry for entry in RECEIVED if entry[0].get("device_id") == "pi-0042"]
    assert received and received[0][1][0][1] == "boot ok"
    # nginx passes the credential on; Loki (auth disabled) ignores it.
    assert received[0][2] in (f"Basic {token}", None)
