"""Proof of a device's key on each request it makes (ADR 0075).

Used by :func:`overlord.auth.deps.device_caller` for HTTP and WebSocket scopes alike: the
method, raw path and query come from the ASGI scope, the body (empty for a WebSocket
handshake) from the caller.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Mapping

from fleetcore import httpsig
from overlord.errors import AuthError

log = logging.getLogger(__name__)

MAX_SEEN = 100_000
# How often a replica records that a device proved its key (devices.key_proved_at).
PROOF_RECORD_S = 60.0


class SeenSignatures:
    """Signatures this replica accepted within the window: a replay to it is refused.

    Per replica, bounded, oldest forgotten first. A replay sent to another replica within the
    window repeats the original request once there (ADR 0075 says what that can do).
    """

    def __init__(self, max_entries: int = MAX_SEEN) -> None:
        self._seen: OrderedDict[bytes, int] = OrderedDict()
        self._max = max_entries
        self._recorded: dict[str, float] = {}

    def proof_pending(self, device_id: str, now: float) -> bool:
        """Whether :meth:`proof_due` would say yes, without taking the turn (the fast path
        hands such a request to the routes, which record the proof)."""
        return now - self._recorded.get(device_id, float("-inf")) >= PROOF_RECORD_S

    def proof_due(self, device_id: str, now: float) -> bool:
        """Whether this replica should write the device's ``key_proved_at`` now: at most
        once a minute per device, so a proof costs no write on most requests."""
        if now - self._recorded.get(device_id, float("-inf")) < PROOF_RECORD_S:
            return False
        if len(self._recorded) >= self._max:
            self._recorded.clear()
        self._recorded[device_id] = now
        return True

    def first_time(self, signature: bytes, created: int, oldest: int) -> bool:
        while self._seen and (
            len(self._seen) >= self._max or next(iter(self._seen.values())) < oldest
        ):
            self._seen.popitem(last=False)
        if signature in self._seen:
            return False
        self._seen[signature] = created
        return True


def check(
    seen: SeenSignatures,
    scope: Mapping[str, object],
    headers: Mapping[str, str],
    *,
    device_id: str,
    public_key: bytes,
    body: bytes,
    window_s: int,
) -> None:
    """Refuse (401) a request not signed by ``public_key`` now, or seen before."""
    try:
        parsed = signature_of(scope, headers, public_key=public_key, body=body, window_s=window_s)
    except httpsig.SignatureError as err:
        log.warning("device %s: request refused: %s", device_id, err)
        raise AuthError(f"device signature refused: {err}") from err
    if not claim(seen, parsed, window_s):
        log.warning("device %s: request refused: a replayed signature", device_id)
        raise AuthError("device signature refused: this signed request was seen before")


def claim(seen: SeenSignatures, parsed: httpsig.Parsed, window_s: int) -> bool:
    """Record a verified signature as used; False when this replica has seen it before."""
    return seen.first_time(parsed.signature, parsed.created, int(time.time()) - window_s)


def signature_of(
    scope: Mapping[str, object],
    headers: Mapping[str, str],
    *,
    public_key: bytes,
    body: bytes,
    window_s: int,
) -> httpsig.Parsed:
    """The request's signature by ``public_key`` (:class:`httpsig.SignatureError` if it does
    not hold), from the ASGI scope's method, raw path and query; nothing logged."""
    raw_path = scope.get("raw_path") or str(scope.get("path", "")).encode()
    query = scope.get("query_string", b"")
    assert isinstance(raw_path, bytes) and isinstance(query, bytes)
    return httpsig.verify(
        headers,
        method=str(scope.get("method", "GET")),
        path=raw_path.decode("latin-1"),
        query=query.decode("latin-1"),
        body=body,
        public_key=public_key,
        now=time.time(),
        window_s=window_s,
    )
