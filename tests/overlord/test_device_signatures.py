"""Key-bound devices (ADR 0075): signed requests only, on SQLite and real PostgreSQL."""

from __future__ import annotations

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleetcore import httpsig
from overlord.auth.models import KeyRole
from tests.overlord.conftest import Overlord, heartbeat
from tests.overlord.test_dashboard_actions import _login


def _enrol(overlord: Overlord, serial: str, key: Ed25519PrivateKey):
    body = {
        "enrollment_token": overlord.enrollment,
        "hostname": "pi",
        "hardware": "pi4",
        "serial": serial,
        "image_version": "1.0.0",
        "booted_slot": "a",
        "public_key": base64.b64encode(httpsig.public_bytes(key)).decode(),
    }
    return overlord.client.post("/api/v1/devices/register", json=body)


def _signed(
    key: Ed25519PrivateKey, token: str, method: str, path: str, body: bytes = b"", **kw: int
) -> dict[str, str]:
    created = kw.get("created", int(time.time()))
    headers = httpsig.sign(key, method=method, path=path, query="", body=body, created=created)
    headers["Authorization"] = f"Bearer {token}"
    if body:
        headers["Content-Type"] = "application/json"
    return headers


@pytest.fixture
def bound(overlord: Overlord) -> tuple[str, str, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    answer = _enrol(overlord, "K1", key)
    assert answer.status_code == 201, answer.text
    return answer.json()["device_id"], answer.json()["device_token"], key


def _state(overlord: Overlord, device_id: str, headers: dict[str, str]) -> int:
    url = f"/api/v1/devices/{device_id}/desired-state"
    return overlord.client.get(url, headers=headers).status_code


def test_a_signed_request_passes_and_a_bare_token_does_not(overlord: Overlord, bound) -> None:
    device_id, token, key = bound
    path = f"/api/v1/devices/{device_id}/desired-state"
    assert _state(overlord, device_id, _signed(key, token, "GET", path)) == 200
    # The stolen bearer token alone, on the cached fast path and the router alike.
    assert _state(overlord, device_id, {"Authorization": f"Bearer {token}"}) == 401
    beat = json.dumps(heartbeat()).encode()
    url = f"/api/v1/devices/{device_id}/heartbeat"
    bare = overlord.client.post(url, content=beat, headers={"Authorization": f"Bearer {token}"})
    assert bare.status_code == 401 and "Signature-Input" in bare.json()["detail"]
    signed = overlord.client.post(url, content=beat, headers=_signed(key, token, "POST", url, beat))
    assert signed.status_code in (200, 202, 204), signed.text


def test_forged_stale_replayed_and_tampered_requests_are_refused(
    overlord: Overlord, bound, caplog: pytest.LogCaptureFixture
) -> None:
    device_id, token, key = bound
    path = f"/api/v1/devices/{device_id}/desired-state"
    forged = _signed(Ed25519PrivateKey.generate(), token, "GET", path)
    assert _state(overlord, device_id, forged) == 401
    stale = _signed(key, token, "GET", path, created=int(time.time()) - 3600)
    assert _state(overlord, device_id, stale) == 401
    once = _signed(key, token, "GET", path)
    assert _state(overlord, device_id, once) == 200
    assert _state(overlord, device_id, once) == 401  # replayed to the same replica
    url = f"/api/v1/devices/{device_id}/heartbeat"
    beat = json.dumps(heartbeat()).encode()
    tampered = _signed(key, token, "POST", url, beat)
    answer = overlord.client.post(url, content=beat.replace(b"1.0.0", b"9.9.9"), headers=tampered)
    assert answer.status_code == 401 and "Content-Digest" in answer.json()["detail"]
    huge = _signed(key, token, "GET", path) | {"Signature-Input": "device=" + "x" * 20_000}
    assert _state(overlord, device_id, huge) == 401
    assert token not in caplog.text


def test_reenrolment_with_another_key_is_refused_and_changes_nothing(
    overlord: Overlord, bound
) -> None:
    device_id, token, key = bound
    refused = _enrol(overlord, "K1", Ed25519PrivateKey.generate())
    assert refused.status_code == 403 and "bound to another key" in refused.json()["detail"]
    # The device's credential and key binding are as they were.
    path = f"/api/v1/devices/{device_id}/desired-state"
    assert _state(overlord, device_id, _signed(key, token, "GET", path)) == 200
    shown = overlord.client.get(f"/api/v1/devices/{device_id}", headers=overlord.as_admin())
    assert shown.json()["key_fingerprint"] == httpsig.fingerprint(httpsig.public_bytes(key))
    assert shown.json()["key_proved_at"] is not None  # the signed poll above
    # The same key re-enrols (a reflashed card that kept /data, or a lost identity file).
    assert _enrol(overlord, "K1", key).status_code == 201


def test_a_malformed_public_key_is_refused_at_enrolment(overlord: Overlord) -> None:
    answer = overlord.client.post(
        "/api/v1/devices/register",
        json={
            "enrollment_token": overlord.enrollment,
            "hostname": "pi",
            "hardware": "pi4",
            "serial": "K2",
            "image_version": "1.0.0",
            "booted_slot": "a",
            "public_key": "not a key",
        },
    )
    assert answer.status_code == 422


def test_a_rekey_signed_by_anything_but_the_bound_key_changes_nothing(
    overlord: Overlord, bound
) -> None:
    device_id, token, key = bound
    thief = Ed25519PrivateKey.generate()
    url = f"/api/v1/devices/{device_id}/key"
    body = json.dumps({"public_key": base64.b64encode(httpsig.public_bytes(thief)).decode()})
    for signer in (thief, None):  # signed with the new key itself; the bare token
        headers = (
            _signed(signer, token, "POST", url, body.encode())
            if signer
            else {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        )
        assert overlord.client.post(url, content=body, headers=headers).status_code == 401
    shown = overlord.client.get(f"/api/v1/devices/{device_id}", headers=overlord.as_admin())
    assert shown.json()["key_fingerprint"] == httpsig.fingerprint(httpsig.public_bytes(key))


def test_the_device_page_shows_the_key_and_when_it_was_proved(overlord: Overlord, bound) -> None:
    device_id, token, key = bound
    path = f"/api/v1/devices/{device_id}/desired-state"
    assert _state(overlord, device_id, _signed(key, token, "GET", path)) == 200
    browser, _csrf = _login(overlord, KeyRole.VIEWER)
    page = browser.get(f"/dashboard/devices/{device_id}").text
    fingerprint = httpsig.fingerprint(httpsig.public_bytes(key))
    assert f"ed25519 {fingerprint[:16]}" in page and "last proved 20" in page
