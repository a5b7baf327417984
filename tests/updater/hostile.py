"""A hostile front for :class:`tests.updater.servers.FleetServer`: a chunk store and an
Overlord that lie, bomb, trickle and break HTTP, one attack at a time.

Requests are parsed with a raw socket loop (no http.server), so answers can be anything a
hostile peer could send: negative or huge lengths, floods of ``100 Continue``, zstd frames
that declare a terabyte, bodies that never end. Each request is counted by kind before the
answer, so a test sees that the device kept heartbeating whatever came back. ``attack`` names
what the Overlord, chunk or TUF metadata answers do now; ``None`` forwards to the honest
upstream. Outside the metadata attacks, TUF metadata is forwarded honestly, so the device gets
as far as fetching chunks.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import socket
import struct
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import zstandard

from fleetcore.wire import API_PREFIX, TUF_PREFIX

MAX_HEAD = 64 * 1024
_API = {"register", "heartbeat", "events", "desired-state"}
MAX_BODY = 4 * 1024 * 1024


def declared_bomb(size: int = 1 << 40) -> bytes:
    """A 17-byte zstd frame that declares ``size`` bytes of content."""
    magic = struct.pack("<I", 0xFD2FB528)
    return magic + bytes([0b11100000]) + struct.pack("<Q", size) + bytes([0x01, 0x00, 0x00])


def undeclared_bomb() -> bytes:
    """About 8 KiB of zstd that decodes to 256 MiB of zeros, with no declared size."""
    params = zstandard.ZstdCompressionParameters.from_level(
        1, window_log=20, write_content_size=False
    )
    stream = zstandard.ZstdCompressor(compression_params=params).compressobj()
    out = [stream.compress(bytes(1 << 20)) for _ in range(256)]
    return b"".join(out) + stream.flush()


# (what is attacked, how): the chunk store while the Overlord answers honestly (so the device
# keeps trying to install), then the Overlord's device API itself.
_ANY = (
    "negative-length",
    "chunked-negative",
    "continue-flood",  # 100 000 interim answers before a real one
    "huge-body",  # 200 MiB announced and streamed until the client hangs up
    "trickle",  # one byte every 0.2 s
    "garbage",  # not HTTP at all
)
ATTACKS: tuple[tuple[str, str], ...] = (
    # TUF metadata first, while the device has none cached, so each attack meets its file.
    ("timestamp", "huge-body"),  # an endless timestamp.json (python-tuf's cap: 16 KiB)
    ("targets", "trickle"),  # N.targets.json a byte every 0.2 s
    ("metadata", "duplicate-key"),  # honest metadata with "signed" named twice, first forged
    ("chunk", "zstd-bomb"),  # frames that declare or decode to far more than the chunk
    *(("chunk", attack) for attack in _ANY),
    *(("api", attack) for attack in _ANY),
    ("api", "bad-json"),  # NaN, deep nesting, duplicate keys
)


def _name_signed_twice(document: bytes) -> bytes:
    """Signed TUF metadata with ``signed`` named twice: a forged one first, then the signed one
    (python-tuf's json.loads keeps the last, so the signature still verifies)."""
    if not document.lstrip().startswith(b"{"):
        return document
    return b'{"signed": {"_type": "forged", "version": 1}, ' + document.lstrip()[1:]


class HostileServer:
    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.attack: tuple[str, str] | None = None  # (target, attack)
        self.lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        self._bombs = (declared_bomb(), undeclared_bomb())
        self._stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{host}:{port}"

    @property
    def tuf_url(self) -> str:
        return f"{self.url}{TUF_PREFIX}"

    def count(self, kind: str) -> int:
        with self.lock:
            return self.counts[kind]

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        reader = conn.makefile("rb")
        with contextlib.suppress(OSError), conn, reader:
            while not self._stop.is_set():
                request = self._read_request(reader)
                if request is None:
                    return
                method, path, headers, body = request
                kind = self._kind(path)
                with self.lock:
                    self.counts[kind] += 1
                current = self.attack
                if current is not None and current[0] != "chunk" and kind == "chunk":
                    # Never an honest chunk after the honest phase: an install that completed
                    # would leave the simulated device waiting for a reboot nobody performs.
                    self._attack(conn, "zstd-bomb", kind)
                    return
                if current is None or current[0] not in self._targets(path, kind):
                    conn.sendall(self._forward(method, path, headers, body))
                    continue
                if current[1] == "duplicate-key":
                    conn.sendall(self._forward(method, path, headers, body, _name_signed_twice))
                    continue
                self._attack(conn, current[1], kind)
                return

    @staticmethod
    def _read_request(reader: object) -> tuple[str, str, dict[str, str], bytes] | None:
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = reader.readline(MAX_HEAD)  # type: ignore[attr-defined]
            if not line:
                return None
            head += line
            if len(head) > MAX_HEAD:
                return None
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        length = min(int(headers.get("content-length", "0") or 0), MAX_BODY)
        body = reader.read(length) if length > 0 else b""  # type: ignore[attr-defined]
        path = urlsplit(target).path if target.startswith("http") else target
        return method, path, headers, body

    @staticmethod
    def _targets(path: str, kind: str) -> set[str]:
        """What an attack may name to hit this request."""
        if kind == "chunk":
            return {"chunk"}
        if kind in _API:
            return {"api"}
        if kind != "tuf-metadata":
            return set()
        role = path.removesuffix(".json").rsplit("/", 1)[-1].rsplit(".", 1)[-1]
        return {"metadata", role}  # N.targets.json: targets

    @staticmethod
    def _kind(path: str) -> str:
        if path.startswith(TUF_PREFIX + "/chunks/"):
            return "chunk"
        if path.startswith(TUF_PREFIX + "/"):
            return "tuf-metadata" if "/metadata/" in path or path.endswith(".json") else "target"
        if path.startswith(API_PREFIX):
            return path.rsplit("/", 1)[-1]  # register, heartbeat, events, desired-state
        return "other"

    def _forward(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        rewrite: Callable[[bytes], bytes] | None = None,
    ) -> bytes:
        """The upstream's answer; ``rewrite`` changes the body of a 200."""
        upstream = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            keep = {k: v for k, v in headers.items() if k not in {"connection", "host"}}
            upstream.request(method, path, body=body or None, headers=keep)
            answer = upstream.getresponse()
            data = answer.read()
            if rewrite is not None and answer.status == 200:
                data = rewrite(data)
            head = f"HTTP/1.1 {answer.status} {answer.reason}\r\n"
            for name, value in answer.getheaders():
                if name.lower() not in {"content-length", "connection", "transfer-encoding"}:
                    head += f"{name}: {value}\r\n"
            head += f"Content-Length: {len(data)}\r\n\r\n"
            return head.encode("latin-1") + data
        finally:
            upstream.close()

    def _attack(self, conn: socket.socket, attack: str, kind: str) -> None:
        json_head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        if attack == "huge-body":
            conn.sendall(json_head + b"Content-Length: 209715200\r\n\r\n")
            block = b" " * (1 << 16)
            for _ in range(3200):
                conn.sendall(block)
        elif attack == "negative-length":
            conn.sendall(json_head + b"Content-Length: -1\r\n\r\n" + b"{}" * 4096)
        elif attack == "continue-flood":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" * 100_000)
            conn.sendall(json_head + b"Content-Length: 2\r\n\r\n{}")
        elif attack == "trickle":
            conn.sendall(json_head + b"Content-Length: 100000\r\n\r\n")
            for _ in range(300):
                conn.sendall(b" ")
                time.sleep(0.2)
        elif attack == "bad-json":
            bodies = (b"NaN", b"[" * 200_000, b'{"device_id": "a", "device_id": "b"}')
            body = bodies[self.count(kind) % len(bodies)]
            conn.sendall(json_head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        elif attack == "chunked-negative":
            conn.sendall(json_head + b"Transfer-Encoding: chunked\r\n\r\n-10\r\n" + b"x" * 4096)
        elif attack == "garbage":
            conn.sendall(b"\x00\xff SMTP ready\r\n" * 1000)
        elif attack == "zstd-bomb":
            body = self._bombs[self.count(kind) % 2]
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
            )
            conn.sendall(body)
