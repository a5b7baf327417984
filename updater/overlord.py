"""The device side of the Overlord API (``fleetcore.wire``) over httpx.

httpx's own reading of the proxy environment is switched off (``trust_env=False``): the proxy
comes from :class:`updater.proxy.ProxyRules`, as for every other connection of the device, and
TLS trusts the system store (plus ``SSL_CERT_FILE``/``SSL_CERT_DIR``), as the chunk pipeline
and the TUF fetcher do.

httpx's timeouts bound each read, so a server that trickles its answer a byte at a time, status
line and headers included, would hold the agent (and its heartbeats) as long as it liked. Every
socket operation of a request is therefore bounded by the request's deadline too
(:class:`_DeadlineBackend`), and the body is capped.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpcore
import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ValidationError

from fleetcore import httpsig, redact, strictjson
from fleetcore.atomic import atomic_write
from fleetcore.errors import FormatError
from fleetcore.wire import (
    API_PREFIX,
    DesiredState,
    EventAck,
    EventBatch,
    Heartbeat,
    RegisterRequest,
    RegisterResponse,
    RekeyRequest,
    RemoteWake,
)
from updater import tls
from updater.clock import OverlordClock
from updater.errors import OverlordClientError
from updater.proxy import ProxyRules

_M = TypeVar("_M", bound=BaseModel)
log = logging.getLogger(__name__)
# httpcore's socket option type (httpcore._backends.base.SOCKET_OPTION).
SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


# The largest answer the device API gives (a desired state with many roles is a few KiB).
MAX_ANSWER = 1 << 20


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names, as httpx gives them
    content: bytes


class OverlordUnreachable(OverlordClientError):
    """No answer, or a 5xx: the device keeps running and queues what it has to say."""


class OverlordRejected(OverlordClientError):
    """A 4xx answer: retrying the same request will not help."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status

    @property
    def refuses_content(self) -> bool:
        """The request's content was refused (malformed, invalid or too large), not the
        device (401, 403) nor the route (404): the same route may take other content."""
        return self.status in {400, 413, 422}


@dataclass(frozen=True)
class Identity:
    device_id: str
    device_token: str = field(repr=False)

    def __post_init__(self) -> None:
        redact.SECRETS.add(self.device_token)

    def save(self, path: Path) -> None:
        """Kept on /data, readable by root only: the device's credential after enrolment."""
        path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"device_id": self.device_id, "device_token": self.device_token})
        atomic_write(path, data.encode(), mode=0o600)

    @classmethod
    def load(cls, path: Path) -> Identity | None:
        try:
            raw = json.loads(path.read_bytes())
            return cls(device_id=str(raw["device_id"]), device_token=str(raw["device_token"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise OverlordClientError(f"device identity {path} is unreadable: {err}") from err


def _proxy_headers(authorization: str | None) -> dict[str, str] | None:
    return {"Proxy-Authorization": authorization} if authorization else None


class _Deadline:
    """When the answer being read must be complete (``time.monotonic``); None between requests."""

    def __init__(self) -> None:
        self.at: float | None = None

    def passed(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def bound(self, timeout: float | None, error: type[httpcore.TimeoutException]) -> float | None:
        """``timeout`` for one socket operation, shortened to what is left before the deadline."""
        if self.at is None:
            return timeout
        left = self.at - time.monotonic()
        if left <= 0:
            raise error("the answer's deadline has passed")
        return left if timeout is None else min(timeout, left)


class _OpenStreams:
    """The client's open sockets, so that another thread can end a request blocked on one
    (closing a socket does not wake a thread blocked reading it; shutting it down does)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: set[httpcore.NetworkStream] = set()
        self._shut = False

    def add(self, stream: httpcore.NetworkStream) -> None:
        with self._lock:
            self._streams.add(stream)
            shut = self._shut
        if shut:  # a request begun after the agent stopped ends at once too
            self.shut_down()

    def discard(self, stream: httpcore.NetworkStream) -> None:
        with self._lock:
            self._streams.discard(stream)

    def shut_down(self) -> None:
        """Shuts down every open socket, and every one opened later."""
        with self._lock:
            self._shut = True
            streams = list(self._streams)
        for stream in streams:
            sock = stream.get_extra_info("socket")
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):  # closed meanwhile
                    sock.shutdown(socket.SHUT_RDWR)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(
        self, inner: httpcore.NetworkStream, deadline: _Deadline, streams: _OpenStreams
    ) -> None:
        self._inner = inner
        self._deadline = deadline
        self._streams = streams
        streams.add(self)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.bound(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.bound(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._streams.discard(self)
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = self._deadline.bound(timeout, httpcore.ConnectTimeout)
        wrapped = self._inner.start_tls(ssl_context, server_hostname, bounded)
        self._streams.discard(self)  # its socket is the TLS stream's now
        return _DeadlineStream(wrapped, self._deadline, self._streams)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's sockets, each read, write and connect bounded by the request's deadline."""

    def __init__(
        self, inner: httpcore.NetworkBackend, deadline: _Deadline, streams: _OpenStreams
    ) -> None:
        self._inner = inner
        self._deadline = deadline
        self._streams = streams

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = self._deadline.bound(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, bounded, local_address, socket_options)
        return _DeadlineStream(stream, self._deadline, self._streams)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = self._deadline.bound(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_unix_socket(path, bounded, socket_options)
        return _DeadlineStream(stream, self._deadline, self._streams)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _deadline_transport(
    proxy: httpx.Proxy | None, deadline: _Deadline, streams: _OpenStreams
) -> httpx.HTTPTransport:
    """httpx's own transport, its connection pool on a :class:`_DeadlineBackend`.

    httpx takes no network backend, so the pool's is replaced before its first connection.
    Should a later httpx or httpcore move it, the agent keeps httpx's per-read timeouts and
    the body's deadline, and says so (the trickle tests fail).
    """
    transport = httpx.HTTPTransport(verify=tls.client_context(), trust_env=False, proxy=proxy)
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.NetworkBackend):
        pool._network_backend = _DeadlineBackend(backend, deadline, streams)  # type: ignore[union-attr]
    else:
        log.warning("httpx's connection pool has moved: an Overlord answer's head has no deadline")
    return transport


class OverlordClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        proxies: ProxyRules | None = None,
        transport: httpx.BaseTransport | None = None,
        deadline_s: float | None = None,
    ) -> None:
        """``proxies`` defaults to the process environment's; ``deadline_s`` bounds a whole
        answer (default: four times ``timeout``)."""
        proxy = (proxies or ProxyRules.resolve()).for_url(base_url)
        self._deadline = _Deadline()
        self._streams = _OpenStreams()
        if transport is None:
            transport = _deadline_transport(
                httpx.Proxy(proxy.url, headers=_proxy_headers(proxy.authorization))
                if proxy
                else None,
                self._deadline,
                self._streams,
            )
        self.http = httpx.Client(
            base_url=f"{base_url.rstrip('/')}{API_PREFIX}",
            timeout=timeout,
            transport=transport,
            trust_env=False,
            # Raw bytes only: a compressed answer could expand past the cap in one piece.
            headers={"Accept-Encoding": "identity"},
        )
        self.identity: Identity | None = None
        # Set by the agent (updater.devicekey); enrolment sends its public half.
        self.key: Ed25519PrivateKey | None = None
        self.clock = OverlordClock()
        self.deadline_s = deadline_s if deadline_s is not None else 4 * timeout

    def close(self) -> None:
        self.http.close()

    def shut_down(self) -> None:
        """Ends the request another thread is blocked in, and every later one (they fail as
        unreachable): for an agent that stops; any thread. Not for a transport given by the
        caller (tests), whose sockets it cannot see."""
        self._streams.shut_down()

    def _request(
        self,
        method: str,
        url: str,
        body: BaseModel | None = None,
        *,
        headers: dict[str, str] | None = None,
        hold_s: float = 0.0,
    ) -> Answer:
        """One request; ``hold_s`` is how long the Overlord may hold it before answering (a
        long-poll), added to the read timeout and the deadline."""
        headers = dict(headers or {})
        if self.identity is not None:
            headers["Authorization"] = f"Bearer {self.identity.device_token}"
        content = body.model_dump_json().encode() if body is not None else None
        if content is not None:
            headers["Content-Type"] = "application/json"
        timeout = self.http.timeout
        if hold_s:
            timeout = httpx.Timeout(
                connect=timeout.connect,
                read=(timeout.read or 0.0) + hold_s,
                write=timeout.write,
                pool=timeout.pool,
            )
        request = self.http.build_request(
            method, url, content=content, headers=headers, timeout=timeout
        )
        if self.identity is not None and self.key is not None:
            request.headers.update(self._signature(request, content or b""))
        self._deadline.at = time.monotonic() + self.deadline_s + hold_s
        try:
            response = self.http.send(request, stream=True)
            try:
                answer = self._read(response)
            finally:
                response.close()
        except httpx.TransportError as err:
            if self._deadline.passed():
                raise OverlordUnreachable(self._too_slow()) from err
            raise OverlordUnreachable(f"Overlord unreachable: {self._quiet(err)}") from err
        finally:
            self._deadline.at = None
        self.clock.learn(answer.headers.get("date"))
        if answer.status >= 500:
            raise OverlordUnreachable(f"Overlord answered {answer.status} to {url}")
        if answer.status >= 400:
            # Masked whole, then cut: an answer may echo the request (FastAPI's 422 quotes
            # the body, enrolment token included), and a cut secret is not recognised.
            text = self._quiet(answer.content.decode("utf-8", "replace"))[:200]
            raise OverlordRejected(
                f"Overlord refused {method} {url}: {answer.status} {text}",
                status=answer.status,
            )
        return answer

    def _signature(self, request: httpx.Request, body: bytes) -> dict[str, str]:
        """RFC 9421 headers over the request as sent (ADR 0075), on the Overlord's clock."""
        assert self.key is not None
        path, _, query = request.url.raw_path.decode("ascii").partition("?")
        return httpsig.sign(
            self.key,
            method=request.method,
            path=path,
            query=query,
            body=body,
            created=int(self.clock.now()),
        )

    def _too_slow(self) -> str:
        return f"Overlord answer not complete within {self.deadline_s:.0f} s"

    def _read(self, response: httpx.Response) -> Answer:
        """The body, capped at MAX_ANSWER bytes and cut off at the request's deadline.

        httpx's timeouts bound each read; a server that trickles bytes would hold the agent
        (and its heartbeats) for as long as it likes, and one that sends 200 MiB would have
        it all in memory. Both end with :class:`OverlordUnreachable`. The sockets stop at the
        deadline too (not so a transport given for tests); the check here is for those.
        """
        length = response.headers.get("Content-Length")
        if length is not None and not (length.isdigit() and int(length) <= MAX_ANSWER):
            raise OverlordUnreachable(
                f"Overlord answer of {length[:24]!r} bytes refused (at most {MAX_ANSWER})"
            )
        encoding = response.headers.get("Content-Encoding", "identity").lower()
        if encoding != "identity":
            raise OverlordUnreachable(f"Overlord answer in {encoding[:24]!r} encoding refused")
        body = bytearray()
        for piece in response.iter_raw():
            body += piece
            if len(body) > MAX_ANSWER:
                raise OverlordUnreachable(f"Overlord answer longer than {MAX_ANSWER} bytes")
            if self._deadline.passed():
                raise OverlordUnreachable(self._too_slow())
        return Answer(response.status_code, dict(response.headers), bytes(body))

    def _quiet(self, error: object) -> str:
        """An error's text without the device token or URL credentials."""
        token = self.identity.device_token if self.identity else None
        return redact.secrets(redact.SECRETS.mask(str(error)), token)

    @staticmethod
    def _parse(model: type[_M], answer: Answer) -> _M:
        try:
            doc = strictjson.loads(answer.content, what="the Overlord's answer")
            return model.model_validate(doc)
        except FormatError as err:
            raise OverlordClientError(f"unexpected answer from the Overlord: {err}") from err
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "top level"
            # Without the input: pydantic quotes it, and an answer may carry a token.
            raise OverlordClientError(
                f"unexpected answer from the Overlord: {where}: {first['msg']}"
            ) from err

    def register(self, request: RegisterRequest) -> Identity:
        response = self._request("POST", "/devices/register", request)
        answer = self._parse(RegisterResponse, response)
        self.identity = Identity(answer.device_id, answer.device_token)
        return self.identity

    def rekey(self, new_key: Ed25519PrivateKey) -> None:
        """Bind the device to ``new_key``: the request is signed with the current key, which
        proves it; from the answer on, requests are signed with the new one. The caller
        stores the new key first, so a cut between the two leaves a key the Overlord knows
        or one an operator rebinds (ADR 0075)."""
        public = base64.b64encode(httpsig.public_bytes(new_key)).decode()
        self._request("POST", f"{self._device()}/key", RekeyRequest(public_key=public))
        self.key = new_key

    def _device(self) -> str:
        return f"/devices/{self.enrolled().device_id}"

    def enrolled(self) -> Identity:
        if self.identity is None:
            raise OverlordClientError("this device is not enrolled yet")
        return self.identity

    def websocket_request(self, url: str) -> tuple[httpx.URL, dict[str, str]]:
        """The absolute URL of the device route ``url`` and the headers that authenticate a
        WebSocket upgrade of it as this device, signed when the device has a key."""
        headers = {"Authorization": f"Bearer {self.enrolled().device_token}"}
        request = self.http.build_request("GET", url, headers=headers)
        if self.key is not None:
            headers.update(self._signature(request, b""))
        return request.url, headers

    def desired_state(self, etag: str | None) -> tuple[DesiredState | None, str | None]:
        """The desired state, or ``None`` when it did not change since ``etag`` (304)."""
        headers = {"If-None-Match": etag} if etag else {}
        answer = self._request("GET", f"{self._device()}/desired-state", headers=headers)
        if answer.status == 304:
            return None, etag
        return self._parse(DesiredState, answer), answer.headers.get("etag")

    def remote_wait(self, hold_s: int) -> bool:
        """Whether a remote session is open for the device, asked as a long-poll the
        Overlord holds up to ``hold_s`` seconds until one is opened (ADR 0083)."""
        answer = self._request(
            "GET", f"{self._device()}/remote-wait?timeout_s={hold_s}", hold_s=hold_s
        )
        return self._parse(RemoteWake, answer).pending

    def heartbeat(self, beat: Heartbeat) -> None:
        self._request("POST", f"{self._device()}/heartbeat", beat)

    def send_events(self, batch: EventBatch) -> EventAck:
        return self._parse(EventAck, self._request("POST", f"{self._device()}/events", batch))
