"""The release repository's caching edge (overlord/deploy/nginx/edge-cache.conf) in real use.

Real nginx runs the shipped config with test-host edits (loopback ports, a cache folder, the
test CA, freshness shortened from 10 s to FRESH_S) in front of an HTTPS origin serving a real
TUF repository and chunk store. Devices are the updater's own clients: python-tuf through
``signing.client.ReleaseClient`` and the pipelined chunk source.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import re
import shutil
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import zstandard

from fleetcore.net import free_port
from fleetcore.release import chunk_path
from fleetcore.version import Version
from signing.client import ReleaseClient
from tests.ops.nginxrun import edit, nginx_running
from tests.ops.tools import DEPLOY_DIR, make_self_signed_cert
from updater.chunks import HttpChunkSource
from updater.config import TransferConfig

pytestmark = pytest.mark.integration

CONF = DEPLOY_DIR / "nginx" / "edge-cache.conf"
REPOS = Path(__file__).resolve().parents[1] / "signing" / "fixtures" / "repos"
FRESH_S = 2
# nginx stores a cached answer's expiry in whole seconds and tests it strictly, so an answer
# cached at 10.9 s with 2 s of freshness is served until 13.0 s: wait a second more than that.
SECOND_GRAIN = 1.5
ORIGIN_NAME = "overlord.example.com"
DELTA = "deltas/abcd/" + "ab" * 32 + "-" + "cd" * 32 + ".zst"


class Origin:
    """An HTTPS static server for ``root/tuf``, counting the requests that reach it."""

    def __init__(self, root: Path, cert: Path) -> None:
        self.root, self.hits, self.down = root, Counter[str](), False
        origin = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                origin.hits[self.path] += 1
                if origin.down:
                    self.send_error(503)
                    return
                super().do_GET()

            def log_message(self, format: str, *args: object) -> None:
                return

        handler = functools.partial(Handler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, cert.with_name("privkey.pem"))
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def serve(self, repo: Path) -> None:
        """Publish ``repo`` (its metadata and targets) as the origin's /tuf/, chunks kept."""
        tuf = self.root / "tuf"
        for part in ("metadata", "targets"):
            shutil.rmtree(tuf / part, ignore_errors=True)
            shutil.copytree(repo / part, tuf / part)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextlib.contextmanager
def run_edge(root: Path, origin: Origin, ca: Path) -> Iterator[str]:
    port = free_port()
    text = CONF.read_text()
    text = edit(text, f"server {ORIGIN_NAME}:443;", f"server 127.0.0.1:{origin.port};")
    text = edit(text, "/etc/ssl/certs/ca-certificates.crt", str(ca))
    text = edit(text, "/var/cache/nginx/fleet", str(root / "cache"))
    text = edit(text, "listen 80 default_server", f"listen 127.0.0.1:{port} default_server")
    text, fresh = re.subn(r"(proxy_cache_valid (?:200|404)) 10s;", rf"\1 {FRESH_S}s;", text)
    assert fresh == 4, "every short-lived freshness in the config is shortened"
    (root / "nginx.conf").write_text(text)
    (root / "logs").mkdir()
    with nginx_running(root, port):
        yield f"http://127.0.0.1:{port}"


def write_chunks(store: Path, count: int) -> list[tuple[str, int]]:
    """Real chunk-store files: zstd frames named by the SHA-256 of their plain bytes."""
    compressor = zstandard.ZstdCompressor(level=3)
    wanted = []
    for n in range(count):
        plain = hashlib.sha256(str(n).encode()).digest() * (256 + n)
        sha = hashlib.sha256(plain).hexdigest()
        path = store / chunk_path(sha)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(compressor.compress(plain))
        wanted.append((sha, len(plain)))
    return wanted


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Origin, str]]:
    tls = tmp_path / "tls"
    tls.mkdir()
    cert = make_self_signed_cert(tls, san=f"DNS:{ORIGIN_NAME}")
    origin = Origin(tmp_path / "www", cert)
    origin.serve(REPOS / "good")
    edge_root = tmp_path / "edge"
    edge_root.mkdir()
    try:
        with run_edge(edge_root, origin, cert) as edge:
            yield origin, edge
    finally:
        origin.close()


def device(tmp_path: Path, name: str, edge: str) -> ReleaseClient:
    return ReleaseClient(
        metadata_dir=tmp_path / name,
        base_url=f"{edge}/tuf",
        bootstrap_root=(REPOS / "good" / "metadata" / "1.root.json").read_bytes(),
    )


def test_a_fleet_fetches_each_immutable_file_once_from_the_origin(
    site: tuple[Origin, str], tmp_path: Path
) -> None:
    origin, edge = site
    chunks = write_chunks(origin.root / "tuf", 40)
    (origin.root / "tuf" / DELTA).parent.mkdir(parents=True)
    (origin.root / "tuf" / DELTA).write_bytes(b"a delta")
    for name in ("device-1", "device-2", "device-3"):
        client = device(tmp_path, name, edge)
        client.refresh()
        manifest = client.get_target("os/1.0.0/manifest.json")
        client.read(manifest)
        source = HttpChunkSource(f"{edge}/tuf", TransferConfig(pipeline_depth=16))
        try:
            got = list(source.get_many(chunks))
        finally:
            source.close()
        assert [hashlib.sha256(data).hexdigest() for data in got] == [s for s, _ in chunks]
        assert httpx.get(f"{edge}/tuf/{DELTA}", timeout=10).content == b"a delta"
    immutable = [p for p in origin.hits if not re.search(r"/(timestamp|\d+\.root)\.json$", p)]
    assert len(immutable) >= 40 + 4  # every chunk, a delta, the manifest, versioned metadata
    assert all(origin.hits[path] == 1 for path in immutable), origin.hits


def test_a_root_rotation_reaches_devices_once_the_short_freshness_passes(
    site: tuple[Origin, str], tmp_path: Path
) -> None:
    origin, edge = site
    device(tmp_path, "device", edge).refresh()  # asks for 2.root.json: a 404, cached briefly
    assert origin.hits["/tuf/metadata/2.root.json"] == 1
    origin.serve(REPOS / "rotated")
    time.sleep(FRESH_S + SECOND_GRAIN)
    poll = device(tmp_path, "device", edge)  # the device's next poll, from its trusted root
    poll.refresh()
    assert '"version": 3' in (tmp_path / "device" / "root.json").read_text()
    custom = poll.get_target("os/2.0.0/manifest.json").custom
    assert custom is not None and custom.version == Version("2.0.0")


def test_devices_keep_polling_from_stale_metadata_while_the_origin_is_down(
    site: tuple[Origin, str], tmp_path: Path
) -> None:
    origin, edge = site
    device(tmp_path, "warm", edge).refresh()
    origin.down = True
    time.sleep(FRESH_S + SECOND_GRAIN)
    answer = httpx.get(f"{edge}/tuf/metadata/timestamp.json", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["X-Cache-Status"] == "STALE"
    late = device(tmp_path, "late", edge)
    late.refresh()  # a device that never polled before still gets the repository
    assert late.get_target("os/1.0.0/manifest.json").custom is not None


def test_only_the_repository_passes_the_edge(site: tuple[Origin, str]) -> None:
    origin, edge = site
    for path in ("/api/v1/devices/d1/desired-state", "/dashboard", "/tuf-other/x"):
        assert httpx.get(f"{edge}{path}", timeout=10).status_code == 404
    assert not any(not p.startswith("/tuf/") for p in origin.hits)
