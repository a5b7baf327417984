"""The Overlord's HTTP API behind one small class; every failure becomes one FleetctlError.

Answers are read with a size cap and strict JSON (duplicate keys, NaN refused): a wrong URL
or a hostile server gets a clear error, not a traceback or an unbounded read. Messages
never carry the token; transport errors are passed through :func:`fleetcore.redact.secrets`.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx

from fleetcore import redact, strictjson
from fleetcore.errors import FormatError
from fleetcore.websocket import Closed, WebSocket
from fleetcore.wire import API_PREFIX
from fleetctl.errors import Refused, ServerError
from fleetctl.settings import Credentials

MAX_ANSWER_BYTES = 64 << 20
_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# A multipart upload of a large release takes as long as the link needs; only silence fails it.
_UPLOAD_TIMEOUT = httpx.Timeout(600.0, connect=10.0)

Params = Mapping[str, str | int | float | bool | None]
UploadParts = Sequence[tuple[str, tuple[str, Any, str]]]


class Client:
    """Bearer-authenticated calls to ``{url}/api/v1``; returns decoded JSON (None for 204)."""

    def __init__(self, credentials: Credentials, *, transport: httpx.BaseTransport | None = None):
        self.url = credentials.url
        self._token = credentials.token
        self._http = httpx.Client(
            base_url=credentials.url,
            headers={
                "Authorization": f"Bearer {credentials.token}",
                "User-Agent": "fleetctl",
                "Accept": "application/json",
            },
            timeout=_TIMEOUT,
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def get(self, path: str, *, params: Params | None = None) -> Any:
        return self.call("GET", path, params=params)

    def exists(self, path: str) -> bool:
        """Does a HEAD of ``path`` (outside the API: a served repository file) answer 200?"""
        try:
            answer = self._http.head(path)
        except httpx.HTTPError as err:
            raise self._transport_error(err) from None
        if answer.status_code in (200, 404):
            return answer.status_code == 200
        raise self._masked(_refusal(answer, b"", path))

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: Any = None,
        files: UploadParts | None = None,
        api: bool = True,
        raw: bool = False,
    ) -> Any:
        """One request; ``path`` is below ``/api/v1`` unless ``api`` is false (``/tuf/...``);
        the answer's JSON, or its bytes with ``raw``."""
        url = f"{API_PREFIX}{path}" if api else path
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            with self._http.stream(
                method,
                url,
                params=query,
                json=body,
                files=files,
                timeout=_UPLOAD_TIMEOUT if files else _TIMEOUT,
            ) as answer:
                data = _read_capped(answer.iter_bytes(), self.url)
        except httpx.HTTPError as err:
            raise self._transport_error(err) from None
        if answer.status_code >= 400:
            raise self._masked(_refusal(answer, data, url))
        if 300 <= answer.status_code < 400:
            raise ServerError(
                f"{self.url}{url} answered a redirect ({answer.status_code}) instead of the API",
                hint="check the URL: use the Overlord's own base URL, with https:// if it "
                "redirects http to https",
            )
        if raw:
            return data
        if answer.status_code == 204 or not data:
            return None
        return _json(data, self.url, url)

    def websocket(self, path: str) -> WebSocket:
        """A WebSocket to ``path`` below ``/api/v1``, with this client's bearer token."""
        headers = {"Authorization": f"Bearer {self._token}", "User-Agent": "fleetctl"}
        try:
            return WebSocket(f"{self.url}{API_PREFIX}{path}", headers)
        except (OSError, Closed) as err:
            reason = redact.secrets(str(err) or type(err).__name__, self._token)
            raise ServerError(f"cannot attach to {self.url}{API_PREFIX}{path}: {reason}") from None

    def _masked(self, refusal: Refused) -> Refused:
        """The server's words with our token masked: a proxy or a hostile host may echo it."""
        hint = redact.secrets(refusal.hint, self._token) if refusal.hint else None
        return Refused(redact.secrets(str(refusal), self._token), status=refusal.status, hint=hint)

    def _transport_error(self, err: httpx.HTTPError) -> ServerError:
        reason = redact.secrets(str(err) or type(err).__name__, self._token)
        if isinstance(err, httpx.ConnectError) and _caused_by_tls(err):
            return ServerError(
                f"TLS with {self.url} failed: {reason}",
                hint="check --url: http:// versus https://, and that the server's certificate "
                "is trusted",
            )
        if isinstance(err, httpx.ConnectError):
            return ServerError(
                f"cannot connect to {self.url}: {reason}",
                hint="is the Overlord running, and is --url (or FLEET_URL) its address?",
            )
        if isinstance(err, httpx.TimeoutException):
            return ServerError(
                f"{self.url} did not answer in time ({type(err).__name__})",
                hint="the Overlord may be overloaded or the network slow; try again",
            )
        return ServerError(
            f"{self.url} did not answer as an HTTP server: {reason}",
            hint="check --url: http:// versus https://, and the port",
        )


def _caused_by_tls(err: BaseException) -> bool:
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _read_capped(chunks: Iterator[bytes], base: str) -> bytes:
    data = bytearray()
    for chunk in chunks:
        data += chunk
        if len(data) > MAX_ANSWER_BYTES:
            raise ServerError(
                f"{base} sent an answer larger than {MAX_ANSWER_BYTES >> 20} MiB",
                hint="check --url: this is not an answer the Overlord sends",
            )
    return bytes(data)


def _json(data: bytes, base: str, path: str) -> Any:
    try:
        return strictjson.loads(data, what=f"the answer to {path}", max_bytes=MAX_ANSWER_BYTES)
    except (FormatError, UnicodeDecodeError) as err:
        raise ServerError(
            f"{base}{path} did not answer with JSON; is this an Overlord?",
            hint="check --url: it is the Overlord's base URL, without /api/v1 or /dashboard",
        ) from err


def _refusal(answer: httpx.Response, data: bytes, path: str) -> Refused:
    status = answer.status_code
    try:
        body = strictjson.loads(data, what="an error answer") if data else None
    except (FormatError, UnicodeDecodeError):
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    server_hint = body.get("hint") if isinstance(body, dict) else None
    # "Fix the named field" only fits a validation error; other 422s (a refused publish)
    # carry the server's own hint or none.
    generic = None if status == 422 and not isinstance(detail, list) else _STATUS_HINTS.get(status)
    hint = server_hint if isinstance(server_hint, str) else generic
    request_id = answer.headers.get("x-request-id")
    failed = f"HTTP {status}" + (f", request id {request_id}" if request_id else "")
    if status >= 500 and not isinstance(detail, str):
        return Refused(
            f"the Overlord failed ({failed})",
            status=status,
            hint="look up the request id in the Overlord's log; retry later",
        )
    if detail is None or (status == 404 and detail == "Not Found"):
        # FastAPI's own 404 (no such route) or not an Overlord at all.
        return Refused(
            f"{answer.url.copy_with(query=None)} answered HTTP {status} without an Overlord error",
            status=status,
            hint="check --url: it is the Overlord's base URL, without /api/v1 or /dashboard",
        )
    if isinstance(detail, list):
        return Refused(f"invalid request: {_fields(detail)}", status=status, hint=hint)
    message = str(detail)
    if status == 401:
        message = f"the token was refused: {message}"
    elif status >= 500:
        message += f" ({failed})"
    return Refused(message, status=status, hint=hint)


def _fields(errors: list[Any]) -> str:
    """422 validation errors as 'field: rule' (the body's fields without the 'body.' part)."""
    parts = []
    for item in errors[:5]:
        if not isinstance(item, dict):
            continue
        loc = [str(p) for p in item.get("loc", [])]
        if loc and loc[0] == "body":
            loc = loc[1:]
        where = ".".join(loc) or "the request"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "; ".join(parts) or "the server refused the request's fields"


_STATUS_HINTS = {
    401: "the token is unknown, expired or revoked: ask an admin for a new one "
    "(fleetctl tokens create) and run fleetctl login",
    403: "this token's role does not allow it; use an operator or admin token",
    404: "check the name or id (the matching 'list' command shows them)",
    409: "the object changed or is in use; look at it again (show/list) and retry",
    422: "fix the named field and retry",
    429: "too many requests; wait a little and retry",
    503: "the Overlord or its database is unavailable; retry in a few seconds",
}
