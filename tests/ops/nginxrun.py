"""nginx from the stack's real config on loopback, in front of stand-in upstreams.

nginx runs from the real config with three edits for a test host: loopback ports instead of
80/443/8081, and upstream addresses instead of the compose service names (those need Docker's
DNS). Shared by the ops tests and the device log-shipping tests, so it imports no Overlord code.

Several Overlord replicas (``replicas``) stand where the stack has one service name that
Docker's DNS answers with every replica's address: an upstream group of them, picked by
``least_conn`` so that a request goes to a replica not already holding a long-lived socket
(in the stack the spread is DNS round robin; a test needs to know the two ends of a remote
session land on different replicas, which is what the Overlord must cope with).
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fleetcore.net import free_port
from tests.ops.tools import DEPLOY_DIR, find_tool, make_self_signed_cert, run_tool

CONF = DEPLOY_DIR / "nginx" / "nginx.conf"


class Echo(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps(
            {
                "upstream": self.server.name,  # type: ignore[attr-defined]
                "path": self.path,
                "forwarded_for": self.headers.get("X-Forwarded-For"),
                "forwarded_proto": self.headers.get("X-Forwarded-Proto"),
                "authorization": self.headers.get("Authorization"),
                "request_id": self.headers.get("X-Request-ID"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        return


def edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


@contextlib.contextmanager
def serve_upstreams(
    handlers: Mapping[str, type[BaseHTTPRequestHandler]],
) -> Iterator[dict[str, int]]:
    """The stack's upstreams on loopback (name -> handler); yields name -> port."""
    servers = {}
    for name, handler in handlers.items():
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.name = name  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[name] = server
    try:
        yield {name: server.server_address[1] for name, server in servers.items()}
    finally:
        for server in servers.values():
            server.shutdown()


@contextlib.contextmanager
def run_nginx(
    root: Path, upstreams: dict[str, int], *, replicas: Sequence[int] = ()
) -> Iterator[tuple[str, str, Path]]:
    """nginx serving the stack's config; yields the HTTPS and HTTP base URLs and the CA file.
    With ``replicas`` (ports), those are the Overlord instead of ``upstreams["overlord"]``."""
    for folder in ("tls", "htpasswd", "logs"):
        (root / folder).mkdir(parents=True)
    https, http = free_port(), free_port()
    text = CONF.read_text()
    text = edit(text, "listen 443 ssl http2", f"listen 127.0.0.1:{https} ssl http2")
    text = edit(text, "listen 80 default_server", f"listen 127.0.0.1:{http} default_server")
    text = edit(text, "listen 127.0.0.1:8081", f"listen 127.0.0.1:{free_port()}")
    if replicas:
        servers = "".join(f"server 127.0.0.1:{port}; " for port in replicas)
        group = f"upstream overlord_replicas {{ zone replicas 64k; least_conn; {servers}}}\n"
        text = edit(text, "    map $http_upgrade", f"    {group}    map $http_upgrade")
        text = edit(text, "http://overlord:8000;", "http://overlord_replicas;")
    for name, conf_port in (("overlord", 8000), ("grafana", 3000), ("loki", 3100)):
        if name == "overlord" and replicas:
            continue
        text = edit(text, f"http://{name}:{conf_port};", f"http://127.0.0.1:{upstreams[name]};")
    (root / "nginx.conf").write_text(text)
    cert = make_self_signed_cert(root / "tls")
    hashed = run_tool(
        [find_tool("openssl"), "passwd", "-apr1", "-stdin"], input="s3cret"
    ).stdout.strip()
    (root / "htpasswd" / "loki-push.htpasswd").write_text(f"fleet-device:{hashed}\n")
    with nginx_running(root, https):
        yield f"https://127.0.0.1:{https}", f"http://127.0.0.1:{http}", cert


@contextlib.contextmanager
def nginx_running(root: Path, port: int) -> Iterator[None]:
    """nginx with ``root/nginx.conf`` (prefix ``root``) until it listens on ``port``; its
    access log goes to ``root/access.log``."""
    # Workers run as nobody by default and could not read the htpasswd file in pytest's
    # root-only temporary folder; in the container the file is mounted world-readable.
    settings = f"daemon off; pid {root}/nginx.pid; user root;"
    with (root / "access.log").open("ab") as access:  # the config logs requests to stdout
        proc = subprocess.Popen(
            [find_tool("nginx"), "-p", root, "-c", root / "nginx.conf", "-g", settings],
            stdin=subprocess.DEVNULL,
            stdout=access,
            stderr=subprocess.PIPE,
        )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                threading.Event().wait(0.05)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)
