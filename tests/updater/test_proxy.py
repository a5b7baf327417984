"""One proxy setting for the whole device: chunks, TUF metadata and the Overlord client."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest
import yaml

from fleetcore.layout import Slot
from fleetcore.version import Version
from fleetcore.wire import RegisterRequest
from tests.updater.conftest import v1_device
from tests.updater.device import SimDevice
from tests.updater.proxy import ForwardProxy, make_certificate
from tests.updater.servers import FleetServer
from updater.config import load_config
from updater.engine import EngineResult
from updater.errors import ConfigError
from updater.overlord import OverlordClient
from updater.proxy import Proxy, ProxyRules

# A port nothing listens on: a proxy there fails every connection through it.
DEAD_PROXY = "http://127.0.0.1:9"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    forward = ForwardProxy()
    yield forward
    forward.close()


def configure(device: SimDevice, **settings: object) -> None:
    device.roots.data_config.parent.mkdir(parents=True, exist_ok=True)
    device.roots.data_config.write_text(yaml.safe_dump(settings))


# -- the rules ---------------------------------------------------------------------------------


def test_environment_variables_lower_case_first_and_all_proxy_fallback():
    rules = ProxyRules.resolve(
        environ={
            "http_proxy": "proxy.lan:3128",
            "HTTP_PROXY": "http://ignored:1",
            "ALL_PROXY": "http://fallback:8080",
        }
    )
    assert rules.for_url("http://repo.example/tuf") == Proxy(
        url="http://proxy.lan:3128", host="proxy.lan", port=3128
    )
    https = rules.for_url("https://repo.example/tuf")
    assert https is not None and https.url == "http://fallback:8080"
    assert ProxyRules.resolve(environ={}).for_url("http://repo.example/") is None


def test_configured_proxy_wins_over_the_environment():
    env = {"HTTPS_PROXY": "http://env:1", "NO_PROXY": "repo.example"}
    rules = ProxyRules.resolve("http://user:p%40ss@conf:3128", None, env)
    proxy = rules.for_url("https://other.example/")
    assert proxy is not None and proxy.url == "http://conf:3128"
    assert proxy.authorization == "Basic dXNlcjpwQHNz"  # user:p@ss
    assert rules.for_url("https://repo.example/") is None  # the environment's list still applies
    replaced = ProxyRules.resolve("http://conf:3128", (), env)
    assert replaced.for_url("https://repo.example/") is not None


@pytest.mark.parametrize(
    ("entry", "url", "bypassed"),
    [
        ("*", "http://anything.example/", True),
        ("example.com", "http://example.com/", True),
        ("example.com", "http://repo.example.com/", True),
        (".example.com", "http://repo.example.com/", True),
        ("*.example.com", "http://repo.example.com/", True),
        ("example.com", "http://notexample.com/", False),
        ("10.0.0.0/8", "http://10.1.2.3:8080/", True),
        ("10.0.0.0/8", "http://11.1.2.3/", False),
        ("127.0.0.1", "http://127.0.0.1:5000/", True),
        ("repo.lan:8443", "https://repo.lan:8443/", True),
        ("repo.lan:8443", "https://repo.lan/", False),
        ("::1", "http://[::1]:80/", True),
        ("[::1]:80", "http://[::1]/", True),
    ],
)
def test_no_proxy_entries(entry, url, bypassed):
    rules = ProxyRules.resolve("http://proxy:3128", (entry,), {})
    assert (rules.for_url(url) is None) is bypassed


@pytest.mark.parametrize("value", ["socks5://proxy:1080", "https://proxy:443", "http://"])
def test_unsupported_proxies_fail_with_a_clear_error(value):
    with pytest.raises(ConfigError, match="proxy"):
        ProxyRules.resolve(environ={"HTTPS_PROXY": value})


def test_a_bad_configured_proxy_names_the_key(device):
    configure(device, proxy={"url": "socks5://proxy:1080"})
    with pytest.raises(ConfigError, match="proxy"):
        load_config(device.roots)


# -- real connections through a real proxy -----------------------------------------------------


def test_install_goes_through_the_proxy_of_the_environment(device, server, proxy, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    engine = device.engine()
    assert engine.start(Version("2.0.0"), server.tuf_url) is EngineResult.REBOOTING
    through_proxy = proxy.targets("GET")
    chunks = {f"{server.tuf_url}/{path}" for path in server.chunk_requests}
    assert chunks and chunks <= set(through_proxy)  # absolute-form, every chunk
    assert f"{server.tuf_url}/metadata/timestamp.json" in through_proxy  # TUF too
    assert server.peers <= proxy.upstreams


def test_configured_proxy_beats_a_dead_environment_proxy(device, server, proxy, monkeypatch):
    monkeypatch.setenv("http_proxy", DEAD_PROXY)
    configure(device, proxy={"url": proxy.url})
    engine = device.engine()
    assert engine.start(Version("2.0.0"), server.tuf_url) is EngineResult.REBOOTING
    assert server.fetched_chunks() > 0
    assert len(proxy.targets("GET")) >= server.fetched_chunks()
    assert server.peers <= proxy.upstreams


def test_no_proxy_reaches_the_server_directly(device, server, proxy, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.0/8")
    engine = device.engine()
    assert engine.start(Version("2.0.0"), server.tuf_url) is EngineResult.REBOOTING
    assert server.fetched_chunks() > 0
    assert proxy.requests == []


def test_https_goes_through_a_connect_tunnel(tmp_path, repo, proxy, monkeypatch):
    cert, key = make_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the device trusts this test CA only
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    server = FleetServer(repo.path, tls=context)
    try:
        device = v1_device(tmp_path / "device", repo)
        engine = device.engine()
        assert engine.start(Version("2.0.0"), server.tuf_url) is EngineResult.REBOOTING
        assert server.fetched_chunks() > 0
        assert engine.store.load().target_slot is Slot.B
    finally:
        server.close()
    host = server.tuf_url.split("/")[2]
    assert set(proxy.targets("CONNECT")) == {host}
    assert proxy.targets("GET") == []  # nothing in clear text
    # Every connection the server saw, chunks and metadata alike, was one of the proxy's.
    assert server.peers and server.peers <= proxy.upstreams
    assert proxy.bytes_to_client > 0


REGISTRATION = RegisterRequest.model_validate(
    {
        "enrollment_token": "t",
        "hostname": "cam-01",
        "hardware": "qemu",
        "image_version": "1.0.0",
        "booted_slot": "a",
    }
)


def test_overlord_client_uses_the_same_rules(server, proxy):
    server.enrollment_token = "t"
    rules = ProxyRules.resolve(f"http://u:pw@{proxy.url.removeprefix('http://')}", (), {})
    client = OverlordClient(server.url, timeout=5, proxies=rules)
    try:
        client.register(REGISTRATION)
    finally:
        client.close()
    assert proxy.targets("POST") == [f"{server.url}/api/v1/devices/register"]
    assert proxy.authorizations == ["Basic dTpwdw=="]


def test_overlord_client_speaks_tls_through_a_connect_tunnel(tmp_path, repo, proxy, monkeypatch):
    """TLS started on a tunnelled socket: the client's sockets (bounded by each answer's
    deadline) wrap the proxy's stream and the TLS stream alike."""
    cert, key = make_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    server = FleetServer(repo.path, tls=context)
    server.enrollment_token = "t"
    rules = ProxyRules.resolve(proxy.url, (), {})
    client = OverlordClient(server.url, timeout=5, proxies=rules)
    try:
        identity = client.register(REGISTRATION)
        desired, _ = client.desired_state(None)
    finally:
        client.close()
        server.close()
    assert identity.device_id and desired is not None
    assert set(proxy.targets("CONNECT")) == {server.url.split("/")[2]}
    assert proxy.targets("POST") == []  # nothing in clear text
