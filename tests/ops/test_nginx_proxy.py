"""The nginx config serving real requests: TLS, routes to the right upstream, limits, auth.

nginx runs from the real config with three edits for a test host: loopback ports instead of
80/443/8081, and upstream addresses instead of the compose service names (those need Docker's
DNS). The upstreams are small HTTP servers that echo what they received.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from overlord import migrate
from overlord.db import make_engine
from simulator.server import serve
from tests.ops.nginxrun import Echo, run_nginx, serve_upstreams
from tests.ops.tools import find_tool, run_tool

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, int]]:
    with serve_upstreams({"overlord": Echo, "grafana": Echo, "loki": Echo}) as ports:
        yield ports


@pytest.fixture(scope="module")
def nginx(
    tmp_path_factory: pytest.TempPathFactory, upstreams: dict[str, int]
) -> Iterator[tuple[str, str, Path]]:
    with run_nginx(tmp_path_factory.mktemp("nginx-live"), upstreams) as urls:
        yield urls


@pytest.fixture
def client(nginx: tuple[str, str, Path]) -> Iterator[httpx.Client]:
    base, _, cert = nginx
    trust = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(base_url=base, verify=trust, timeout=10) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "upstream"),
    [
        ("/api/v1/devices/d1/desired-state", "overlord"),
        ("/health", "overlord"),
        ("/tuf/metadata/timestamp.json", "overlord"),
        ("/dashboard", "overlord"),
        ("/dashboard/devices/d1", "overlord"),
        ("/static/dashboard.css", "overlord"),
        ("/openapi.json", "overlord"),
        ("/grafana/api/health", "grafana"),
    ],
)
def test_routes_reach_their_upstream_with_the_path_intact(
    client: httpx.Client, path: str, upstream: str
):
    answer = client.get(path)
    assert answer.status_code == 200
    echoed = answer.json()
    assert (echoed["upstream"], echoed["path"]) == (upstream, path)
    assert echoed["forwarded_for"] == "127.0.0.1"
    assert echoed["forwarded_proto"] == "https"


@pytest.mark.parametrize(
    "path", ["/metrics", "/prometheus/", "/alertmanager/", "/loki/api/v1/query"]
)
def test_internal_paths_are_not_served(client: httpx.Client, path: str):
    assert client.get(path).status_code == 404


def test_a_client_cannot_choose_its_forwarded_address(client: httpx.Client):
    """nginx overwrites X-Forwarded-For with the address it sees, never appends to it."""
    forged = {"X-Forwarded-For": "203.0.113.7, 198.51.100.9"}
    echoed = client.get("/api/v1/devices", headers=forged).json()
    assert echoed["forwarded_for"] == "127.0.0.1"


def test_login_is_rate_limited_whatever_x_forwarded_for_says(
    tmp_path_factory: pytest.TempPathFactory, upstreams: dict[str, int]
):
    """A real Overlord behind the shipped nginx: 200 failed logins, each from a forged address.

    The Overlord trusts forwarded headers from loopback (nginx here) only, and nginx replaces
    the client's header, so every attempt counts against the one real client address.
    """
    root = tmp_path_factory.mktemp("nginx-overlord")
    database = root / "overlord.db"
    migrate.upgrade(make_engine(f"sqlite:///{database}"))
    env = {
        "OVERLORD_DATABASE_URL": f"sqlite:///{database}",
        "OVERLORD_REPO_DIR": str(root / "repo"),
        "OVERLORD_KEYS_DIR": str(root / "keys"),
        "OVERLORD_RUN_SCHEDULER": "false",
        "OVERLORD_ANONYMOUS_RATE_PER_S": "0.01",
        "OVERLORD_ANONYMOUS_RATE_BURST": "5",
    }
    with serve(env=env, log=root / "overlord.log") as overlord:
        port = int(overlord.rsplit(":", 1)[1])
        with run_nginx(root / "nginx", upstreams | {"overlord": port}) as (base, _, cert):
            trust = ssl.create_default_context(cafile=str(cert))
            with httpx.Client(base_url=base, verify=trust, timeout=10) as client:
                answers = [
                    client.post(
                        "/dashboard/login",
                        data={"token": "mfa_wrong"},
                        headers={"X-Forwarded-For": f"198.51.100.{n % 250}"},
                    )
                    for n in range(200)
                ]
    codes = [a.status_code for a in answers]
    assert codes[:5] == [401] * 5
    # The Overlord's own limit (its JSON answer), not nginx's coarser per-address zone.
    assert any(a.status_code == 429 and "too many login attempts" in a.text for a in answers)


def test_each_request_gets_nginx_s_own_id(client: httpx.Client):
    """The Overlord logs by the id nginx sets; a client cannot choose it."""
    ids = [
        client.get("/health", headers={"X-Request-ID": "chosen"}).json()["request_id"]
        for _ in range(2)
    ]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids) and ids[0] != ids[1]


def test_root_goes_to_the_dashboard(client: httpx.Client):
    answer = client.get("/")
    assert answer.status_code == 302
    assert answer.headers["location"].endswith("/dashboard")


def test_plain_http_redirects_to_https(nginx: tuple[str, str, Path]):
    _, http, _ = nginx
    answer = httpx.get(f"{http}/api/v1/devices", headers={"Host": "overlord.test"})
    assert answer.status_code == 308
    assert answer.headers["location"] == "https://overlord.test/api/v1/devices"


def test_log_push_needs_the_device_credential(client: httpx.Client):
    assert client.post("/loki/api/v1/push", content=b"{}").status_code == 401
    assert client.post("/loki/api/v1/push", auth=("fleet-device", "wrong")).status_code == 401
    answer = client.post("/loki/api/v1/push", content=b"{}", auth=("fleet-device", "s3cret"))
    assert answer.status_code == 200
    assert answer.json()["upstream"] == "loki"


def test_enrollment_is_rate_limited(client: httpx.Client):
    # 1 request/s with a burst of 20: a quick series of 60 must run into 429s.
    codes = [client.post("/api/v1/devices/register", content=b"{}").status_code for _ in range(60)]
    assert codes[0] == 200
    assert 429 in codes


def test_tls_versions_below_1_2_are_refused(nginx: tuple[str, str, Path]):
    base, _, _ = nginx
    port = base.rsplit(":", 1)[1]
    result = run_tool(
        [find_tool("openssl"), "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_1"],
        input="",
    )
    assert result.returncode != 0
