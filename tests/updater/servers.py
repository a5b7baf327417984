"""A real HTTP server on loopback: the release repository under /tuf and a small Overlord.

The Overlord part implements the device endpoints of ``fleetcore.wire`` (register,
desired-state with ETag/304, heartbeat, events) with in-memory state, so the agent is tested
against real HTTP. ``down`` makes every request fail by dropping the connection, as a dead
server behind a load balancer would.
"""

from __future__ import annotations

import collections
import hashlib
import json
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fleetcore.wire import API_PREFIX, TUF_PREFIX, EventBatch, Heartbeat, RegisterRequest


class FleetServer:
    def __init__(self, repo: Path, *, tls: ssl.SSLContext | None = None) -> None:
        """``tls``: serve https with this server context instead of plain http."""
        self.repo = repo
        self.scheme = "https" if tls else "http"
        self.lock = threading.Lock()
        self.requests: list[str] = []
        self.down = False
        self.down_after_chunks: int | None = None
        self.chunk_requests: collections.Counter[str] = collections.Counter()
        self.chunk_bytes = 0
        self.enrollment_token = "enrol-me"
        # A refused enrolment answers 422 quoting the request, as FastAPI's validation does.
        self.echo_refusals = False
        self.devices: dict[str, str] = {}
        self.desired: dict[str, object] = {}
        self.heartbeats: list[Heartbeat] = []
        self.registrations: list[RegisterRequest] = []
        self.events: list[dict[str, object]] = []
        self.last_seq = 0
        # Given each event batch, a status to answer instead of taking it (None: take it).
        self.judge_events: Callable[[EventBatch], int | None] | None = None
        self.event_batches: list[tuple[list[int], int]] = []  # (seqs, status) of each batch
        self.peers: set[tuple[str, int]] = set()  # (host, port) of every client connection
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{self.scheme}://{host!s}:{port}"

    @property
    def tuf_url(self) -> str:
        return f"{self.url}{TUF_PREFIX}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def set_desired(
        self, version: str | None, *, prestage: str | None = None, poll_s: int | None = None
    ) -> None:
        """The desired OS release, and a pre-stage hint (ADR 0082) beside it."""
        desired: dict[str, object] = {}
        for key, named in (("os", version), ("prestage", prestage)):
            if named:
                desired[key] = {"version": named, "manifest_target": f"os/{named}/manifest.json"}
        if prestage and poll_s:
            desired["prestage"] = {**desired["prestage"], "poll_s": poll_s}  # type: ignore[dict-item]
        with self.lock:
            self.desired = desired

    def fetched_chunks(self) -> int:
        return sum(self.chunk_requests.values())

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once, as nginx does

            def log_message(self, *args: object) -> None:
                return

            def setup(self) -> None:
                super().setup()
                with server.lock:
                    server.peers.add(self.client_address[:2])

            def _refuse(self) -> bool:
                with server.lock:
                    if server.down:
                        self.close_connection = True
                        return True
                return False

            def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None):
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, data: object, headers: dict[str, str] | None = None):
                self._send(
                    status,
                    json.dumps(data).encode(),
                    {"Content-Type": "application/json", **(headers or {})},
                )

            def do_GET(self) -> None:
                if self._refuse():
                    return
                with server.lock:
                    server.requests.append(self.path)
                if self.path.startswith(TUF_PREFIX + "/"):
                    self._tuf(self.path[len(TUF_PREFIX) + 1 :])
                elif self.path.startswith(API_PREFIX + "/devices/") and self.path.endswith(
                    "/desired-state"
                ):
                    if not self._authorised():
                        return
                    with server.lock:
                        body = json.dumps(server.desired, sort_keys=True).encode()
                    etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                    if self.headers.get("If-None-Match") == etag:
                        self._send(304, headers={"ETag": etag})
                    else:
                        self._send(200, body, {"ETag": etag, "Content-Type": "application/json"})
                else:
                    self._send(404)

            def _tuf(self, relative: str) -> None:
                path = (server.repo / relative).resolve()
                if not path.is_relative_to(server.repo.resolve()) or not path.is_file():
                    self._send(404)
                    return
                if relative.startswith(("chunks/", "deltas/")):
                    with server.lock:
                        limit = server.down_after_chunks
                        if limit is not None and server.fetched_chunks() >= limit:
                            server.down = True
                            self.close_connection = True
                            return
                        server.chunk_requests[relative] += 1
                        server.chunk_bytes += path.stat().st_size
                self._send(200, path.read_bytes())

            def _authorised(self) -> bool:
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                device = self.path.split("/")[4]
                if server.devices.get(device) != token:
                    self._json(401, {"detail": "bad device token"})
                    return False
                return True

            def do_POST(self) -> None:
                if self._refuse():
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with server.lock:
                    server.requests.append(self.path)
                if self.path == f"{API_PREFIX}/devices/register":
                    request = RegisterRequest.model_validate_json(body)
                    server.registrations.append(request)
                    if request.enrollment_token != server.enrollment_token:
                        if server.echo_refusals:
                            detail = {"loc": ["body"], "msg": "refused", "input": json.loads(body)}
                            self._json(422, {"detail": [detail]})
                        else:
                            self._json(403, {"detail": "bad enrollment token"})
                        return
                    device_id = f"dev-{len(server.devices) + 1}"
                    server.devices[device_id] = f"token-{device_id}"
                    self._json(200, {"device_id": device_id, "device_token": f"token-{device_id}"})
                    return
                if not self._authorised():
                    return
                if self.path.endswith("/heartbeat"):
                    server.heartbeats.append(Heartbeat.model_validate_json(body))
                    self._send(204)
                elif self.path.endswith("/events"):
                    batch = EventBatch.model_validate_json(body)
                    with server.lock:
                        judge = server.judge_events
                        status = judge(batch) if judge else None
                        seqs = [e.seq for e in batch.events]
                        server.event_batches.append((seqs, status or 200))
                    if status is not None:  # as FastAPI answers a body it does not validate
                        self._json(status, {"detail": [{"loc": ["body"], "msg": "refused"}]})
                        return
                    with server.lock:
                        for event in batch.events:
                            if event.seq > server.last_seq:
                                server.events.append(event.model_dump(mode="json"))
                                server.last_seq = event.seq
                    self._json(200, {"accepted": len(batch.events), "last_seq": server.last_seq})
                else:
                    self._send(404)

        return Handler
