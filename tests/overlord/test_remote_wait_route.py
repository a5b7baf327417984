"""The device's long-poll for a remote session (ADR 0083) through the Overlord's HTTP API, on
SQLite and PostgreSQL: an open session answers at once, none answers ``pending: false`` when
the hold runs out, only the device's own credential is taken, and a key-bound device's wait
must be signed, query string included (ADR 0075)."""

from __future__ import annotations

import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleetcore import httpsig
from tests.overlord.conftest import Overlord
from tests.overlord.test_device_signatures import bound  # noqa: F401 (fixture)


def _wait(overlord: Overlord, device_id: str, headers: dict[str, str], timeout_s: int = 1):
    return overlord.client.get(
        f"/api/v1/devices/{device_id}/remote-wait?timeout_s={timeout_s}", headers=headers
    )


def test_an_open_session_answers_at_once_and_none_when_the_hold_runs_out(overlord: Overlord):
    device_id, auth = overlord.enroll()
    nothing = _wait(overlord, device_id, auth)
    assert nothing.status_code == 200, nothing.text
    assert nothing.json() == {"pending": False}
    opened = overlord.client.post(
        f"/api/v1/devices/{device_id}/remote-sessions",
        json={"kind": "logs"},
        headers=overlord.as_admin(),
    )
    assert opened.status_code == 201, opened.text
    # Held up to 300 s were nothing open: the answer comes because the session is.
    assert _wait(overlord, device_id, auth, timeout_s=300).json() == {"pending": True}


def test_only_the_devices_own_credential_waits(overlord: Overlord):
    device_id, _auth = overlord.enroll("W1")
    _other, other_auth = overlord.enroll("W2")
    assert _wait(overlord, device_id, other_auth).status_code == 403
    assert _wait(overlord, device_id, overlord.as_admin()).status_code == 403
    assert _wait(overlord, device_id, {}).status_code == 401
    assert _wait(overlord, device_id, _auth, timeout_s=0).status_code == 422


def test_a_key_bound_device_signs_its_wait_query_included(
    overlord: Overlord,
    bound: tuple[str, str, Ed25519PrivateKey],  # noqa: F811
):
    device_id, token, key = bound
    path = f"/api/v1/devices/{device_id}/remote-wait"

    def signed(query: str) -> dict[str, str]:
        headers = httpsig.sign(
            key, method="GET", path=path, query=query, body=b"", created=int(time.time())
        )
        return headers | {"Authorization": f"Bearer {token}"}

    bearer_only = {"Authorization": f"Bearer {token}"}
    assert _wait(overlord, device_id, bearer_only).status_code == 401
    # Signed for another hold than the one asked: the query is covered.
    assert _wait(overlord, device_id, signed("timeout_s=300")).status_code == 401
    answer = _wait(overlord, device_id, signed("timeout_s=1"))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"pending": False}
