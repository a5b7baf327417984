"""Re-keying and credential rotation (ADR 0075) across two real replicas sharing a database.

The device is the updater's own client against `overlord serve`. Its re-key goes through
replica a; replica b, which had just cached the old key, must refuse the old key and take
the new one. An admin's rotation through a must make b refuse the device, and let it enrol
again with another key. On SQLite and on PostgreSQL (NOTIFY).
"""

from __future__ import annotations

import base64
from pathlib import Path

import httpx

from fleetcore import httpsig
from fleetcore.wire import Heartbeat, RegisterRequest
from overlord.auth.models import KeyRole
from tests.overlord.conftest import create_token, heartbeat
from tests.overlord.servers import overlord_process
from tests.overlord.test_replicas import _env
from tests.overlord.test_revocation import _seconds_until, shared_database  # noqa: F401
from tests.overlord.tufrepo import make_repo
from updater import devicekey
from updater.overlord import OverlordClient, OverlordRejected


def _enrol(client: OverlordClient, url: str, key_path: Path) -> str:
    client.key = devicekey.create(key_path)
    identity = client.register(
        RegisterRequest.model_validate(
            {
                "enrollment_token": create_token(url, KeyRole.ENROLLMENT),
                "hostname": "pi-rekey",
                "hardware": "pi5",
                "serial": "REKEY1",
                "image_version": "1.0.0",
                "booted_slot": "a",
                "public_key": base64.b64encode(httpsig.public_bytes(client.key)).decode(),
            }
        )
    )
    return identity.device_id


def _refused(client: OverlordClient) -> bool:
    try:
        client.desired_state(None)
    except OverlordRejected as err:
        return err.status == 401
    return False


def test_rekey_and_rotation_reach_the_other_replica(
    shared_database: str,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
):
    url = shared_database
    repo = make_repo(tmp_path / "tuf")
    admin = {"Authorization": f"Bearer {create_token(url, KeyRole.ADMIN)}"}
    env = _env(url, repo, OVERLORD_RUN_SCHEDULER="false", OVERLORD_AUTH_CACHE_MAX_S="3600")
    if not url.startswith("sqlite"):
        env["OVERLORD_AUTH_CACHE_TTL_S"] = "3600"
    with (
        overlord_process(env, log=tmp_path / "a.log") as a,
        overlord_process(env, log=tmp_path / "b.log") as b,
    ):
        on_a, on_b, old_on_b = (OverlordClient(u, timeout=10) for u in (a, b, b))
        try:
            device_id = _enrol(on_a, url, tmp_path / "key.pem")
            on_b.identity = old_on_b.identity = on_a.identity
            on_b.key = old_on_b.key = on_a.key
            assert on_b.desired_state(None)[0] is not None  # b caches the credential and key

            new_key = devicekey.create(tmp_path / "new-key.pem")
            on_a.rekey(new_key)
            _seconds_until(lambda: _refused(old_on_b), "the replaced key")
            on_b.key = new_key
            on_b.heartbeat(Heartbeat.model_validate(heartbeat("1.0.0")))
            shown = httpx.get(f"{b}/api/v1/devices/{device_id}", headers=admin).json()
            assert shown["key_fingerprint"] == httpsig.fingerprint(httpsig.public_bytes(new_key))

            rotated = httpx.post(f"{a}/api/v1/devices/{device_id}/rotate-credential", headers=admin)
            assert rotated.status_code == 200 and rotated.json()["key_fingerprint"] is None
            _seconds_until(lambda: _refused(on_b), "the rotated credential")
            # Unbound now: the device may enrol again, with a key of its choosing.
            assert _enrol(on_a, url, tmp_path / "third-key.pem") == device_id
            assert on_a.desired_state(None)[0] is not None

            audit = httpx.get(f"{a}/api/v1/audit", headers=admin).json()["items"]
            actions = [entry["action"] for entry in audit]
            assert "device.rekey" in actions and "device.credential_rotate" in actions
        finally:
            for client in (on_a, on_b, old_on_b):
                client.close()
