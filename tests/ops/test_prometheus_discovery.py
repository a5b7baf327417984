"""Prometheus discovering devices through the Overlord's HTTP SD endpoint, for real.

The fleet-devices job of prometheus.yml runs unchanged except for two test-host edits: the SD
URL points at a loopback stand-in for GET /api/v1/sd/prometheus, and the token file path is a
temporary one. The stand-in answers only with the right bearer token, in the documented JSON
shape, with a target that is a loopback node exporter stand-in.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from fleetcore.net import free_port
from tests.ops.tools import DEPLOY_DIR, find_tool

pytestmark = pytest.mark.integration

TOKEN = "viewer-token-for-tests"
NODE_METRICS = b"""# TYPE node_load1 gauge
node_load1 0.25
"""


class FleetStandIn(BaseHTTPRequestHandler):
    """GET /api/v1/sd/prometheus (bearer token) and a node exporter's GET /metrics."""

    def do_GET(self) -> None:
        server: Any = self.server
        if self.path == "/metrics":
            self._send(200, "text/plain; version=0.0.4", NODE_METRICS)
        elif self.path != "/api/v1/sd/prometheus":
            self._send(404, "text/plain", b"")
        elif self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(401, "text/plain", b"")
        else:
            port = server.server_address[1]
            groups = [
                {
                    "targets": [f"127.0.0.1:{port}"],
                    "labels": {
                        "__meta_fleet_device_id": "pi-0042",
                        "__meta_fleet_hardware": "pi5",
                        "__meta_fleet_group": "lab",
                    },
                }
            ]
            self._send(200, "application/json", json.dumps(groups).encode())

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


def discovery_config(fleet_port: int, token_file: Path) -> dict[str, Any]:
    """Only the fleet-devices job of the real config, pointed at the loopback stand-in."""
    config = yaml.safe_load((DEPLOY_DIR / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "fleet-devices"]
    sd = job["http_sd_configs"][0]
    assert sd["url"] == "http://overlord:8000/api/v1/sd/prometheus"
    sd["url"] = f"http://127.0.0.1:{fleet_port}/api/v1/sd/prometheus"
    sd["authorization"]["credentials_file"] = str(token_file)
    job["scrape_interval"] = "1s"
    return {"global": config["global"], "scrape_configs": [job]}


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("prometheus")
    fleet = ThreadingHTTPServer(("127.0.0.1", 0), FleetStandIn)
    threading.Thread(target=fleet.serve_forever, daemon=True).start()
    token_file = root / "overlord-sd-token"
    token_file.write_text(TOKEN)
    config_file = root / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(discovery_config(fleet.server_address[1], token_file)))
    port = free_port()
    proc = subprocess.Popen(
        [
            find_tool("prometheus"),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        fleet.shutdown()


def poll(url: str, params: dict[str, str], ready: Any) -> Any:
    """The first answer that ready() accepts; Prometheus needs a few seconds to discover.

    Until its storage is open, Prometheus answers its API with 503 and a plain-text body; an
    answer that is not a 200 with JSON counts as "not yet", like a refused connection.
    """
    seen = "nothing"
    deadline = time.monotonic() + 90  # a loaded CI host; an idle one answers within seconds
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, params=params, timeout=5)
            seen = f"{response.status_code} {response.text[:200]!r}"
            answer = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as error:
            seen, answer = repr(error), None
        if answer is not None and ready(answer):
            return answer
        time.sleep(0.25)
    pytest.fail(f"no usable answer from {url}; last: {seen}")


def test_device_targets_are_discovered_with_their_labels(prometheus: str):
    answer = poll(
        f"{prometheus}/api/v1/targets",
        {"state": "active"},
        lambda a: a["data"]["activeTargets"],
    )
    (target,) = answer["data"]["activeTargets"]
    labels = target["labels"]
    assert labels["job"] == "fleet-devices"
    assert (labels["device_id"], labels["hardware"], labels["group"]) == ("pi-0042", "pi5", "lab")
    assert not any(name.startswith("__meta_") for name in labels)


def test_device_metrics_carry_the_device_id(prometheus: str):
    answer = poll(
        f"{prometheus}/api/v1/query",
        {"query": 'node_load1{job="fleet-devices"}'},
        lambda a: a["data"]["result"],
    )
    (series,) = answer["data"]["result"]
    assert series["metric"]["device_id"] == "pi-0042"
    assert series["value"][1] == "0.25"
