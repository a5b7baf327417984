"""Configuration in the device's desired state: merged, with its digest, 304 while unchanged,
cached answers dropped on every replica when it changes, the applied digest from heartbeats.
Each test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib

import httpx

from fleetcore.wire import DesiredState
from overlord.configvars import sealing
from tests.overlord.conftest import Overlord, heartbeat, make_overlord
from tests.overlord.tufrepo import Repo

CONFIG = "/api/v1/config"
SECRET = "s3cret-rtsp-password"


def _put(overlord: Overlord, path: str, value: str, *, secret: bool = False) -> None:
    answer = overlord.client.put(
        f"{CONFIG}{path}", json={"value": value, "secret": secret}, headers=overlord.as_admin()
    )
    assert answer.status_code == 200, answer.text


def _delete(overlord: Overlord, path: str) -> None:
    assert overlord.client.delete(f"{CONFIG}{path}", headers=overlord.as_admin()).status_code == 204


def _in_group(overlord: Overlord, group: str, serial: str) -> tuple[str, dict[str, str]]:
    device_id, auth = overlord.enroll(serial)
    admin = overlord.as_admin()
    overlord.client.put(f"/api/v1/groups/{group}", json={}, headers=admin)
    overlord.client.patch(f"/api/v1/devices/{device_id}", json={"group": group}, headers=admin)
    return device_id, auth


class Poller:
    """A device polling with If-None-Match, as the updater does."""

    def __init__(self, overlord: Overlord, device_id: str, auth: dict[str, str]) -> None:
        self.client, self.auth = overlord.client, auth
        self.url = f"/api/v1/devices/{device_id}/desired-state"
        self.etag: str | None = None
        self.state: DesiredState | None = None

    def poll(self) -> int:
        headers = self.auth | ({"If-None-Match": self.etag} if self.etag else {})
        answer = self.client.get(self.url, headers=headers)
        assert answer.status_code in (200, 304), answer.text
        if answer.status_code == 200:
            self.state = DesiredState.model_validate(answer.json())
            self.etag = answer.headers["etag"]
        return answer.status_code

    def values(self) -> dict[str, str]:
        assert self.state is not None
        return {key: v.value for key, v in self.state.config.items()}


def test_the_desired_state_carries_the_merged_configuration_and_answers_304(
    database_url: str, repo: Repo
):
    overlord = make_overlord(database_url, repo, config_key=sealing.new_key())
    with overlord.client:
        device_id, auth = _in_group(overlord, "cameras", "DS1")
        _other, _other_auth = _in_group(overlord, "doors", "DS2")
        device = Poller(overlord, device_id, auth)
        assert device.poll() == 200
        assert device.values() == {}
        empty = device.state.config_digest if device.state else None
        assert empty is not None and len(empty) == 64

        _put(overlord, "/fleet/CAMERA_FPS", "15")
        _put(overlord, "/groups/cameras/CAMERA_FPS", "25")
        _put(overlord, "/groups/cameras/RTSP_PASSWORD", SECRET, secret=True)
        assert device.poll() == 200
        assert device.values() == {"CAMERA_FPS": "25", "RTSP_PASSWORD": SECRET}
        assert device.state is not None and device.state.config["RTSP_PASSWORD"].secret
        assert SECRET not in repr(device.state), "a secret value is left out of the repr"
        effective = overlord.client.get(
            f"{CONFIG}/devices/{device_id}/effective", headers=overlord.as_admin()
        ).json()
        assert device.state.config_digest == effective["digest"]
        assert device.poll() == 304

        # Changes that do not reach this device's configuration leave it a 304.
        _put(overlord, "/groups/doors/CAMERA_FPS", "5")
        _put(overlord, "/fleet/CAMERA_FPS", "20")  # the group's value still wins
        assert device.poll() == 304

        _put(overlord, f"/devices/{device_id}/CAMERA_FPS", "30")
        assert device.poll() == 200 and device.values()["CAMERA_FPS"] == "30"
        _delete(overlord, f"/devices/{device_id}/CAMERA_FPS")
        assert device.poll() == 200 and device.values()["CAMERA_FPS"] == "25"
        _delete(overlord, "/groups/cameras/CAMERA_FPS")
        assert device.poll() == 200 and device.values()["CAMERA_FPS"] == "20"

        # The same secret set again is sealed afresh: a new digest, the same value.
        digest = device.state.config_digest
        _put(overlord, "/groups/cameras/RTSP_PASSWORD", SECRET, secret=True)
        assert device.poll() == 200 and device.state.config_digest != digest
        assert device.values()["RTSP_PASSWORD"] == SECRET


def test_the_etag_is_computed_without_the_secret_value(database_url: str, repo: Repo):
    overlord = make_overlord(database_url, repo, config_key=sealing.new_key())
    with overlord.client:
        device_id, auth = overlord.enroll("DS3")
        _put(overlord, f"/devices/{device_id}/TOKEN_A", SECRET, secret=True)
        answer = overlord.client.get(f"/api/v1/devices/{device_id}/desired-state", headers=auth)
        assert SECRET in answer.text  # the device gets it
        plain_tag = '"' + hashlib.sha256(answer.content).hexdigest()[:32] + '"'
        masked = answer.content.replace(SECRET.encode(), b"***")
        assert answer.headers["etag"] == '"' + hashlib.sha256(masked).hexdigest()[:32] + '"'
        assert answer.headers["etag"] != plain_tag


def test_a_quarantined_device_gets_no_configuration(overlord: Overlord):
    device_id, auth = overlord.enroll("DS4")
    _put(overlord, "/fleet/A", "1")
    admin = overlord.as_admin()
    overlord.client.patch(
        f"/api/v1/devices/{device_id}/status", json={"status": "quarantined"}, headers=admin
    )
    device = Poller(overlord, device_id, auth)
    assert device.poll() == 200 and device.values() == {}
    assert device.state is not None and device.state.config_digest is None


def test_a_secret_the_overlord_cannot_open_is_a_503_never_a_partial_configuration(
    database_url: str, repo: Repo
):
    keyed = make_overlord(database_url, repo, config_key=sealing.new_key())
    with keyed.client:
        device_id, auth = keyed.enroll("DS5")
        _put(keyed, "/fleet/PLAIN", "1")
        _put(keyed, "/fleet/TOKEN_B", SECRET, secret=True)
    url = f"/api/v1/devices/{device_id}/desired-state"
    for key in (None, sealing.new_key()):
        replica = make_overlord(database_url, repo, config_key=key)
        with replica.client:
            answer = replica.client.get(url, headers=auth)
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"] == "5"
            assert "fleet/TOKEN_B" in answer.json()["detail"] and SECRET not in answer.text
            # Plain values are still listed, the secret masked: nothing needs the key there.
            listed = replica.client.get(f"{CONFIG}/fleet", headers=replica.as_admin()).json()
            assert [v["value"] for v in listed["variables"]] == ["1", "***"]


def test_the_heartbeat_reports_the_applied_digest(overlord: Overlord):
    device_id, auth = overlord.enroll("DS6")
    _put(overlord, "/fleet/A", "1")
    device = Poller(overlord, device_id, auth)
    device.poll()
    assert device.state is not None
    beat = f"/api/v1/devices/{device_id}/heartbeat"
    sent = heartbeat() | {"config_digest": device.state.config_digest}
    assert overlord.client.post(beat, json=sent, headers=auth).status_code == 204
    effective = f"{CONFIG}/devices/{device_id}/effective"
    shown = overlord.client.get(effective, headers=overlord.as_admin()).json()
    assert shown["applied_digest"] == shown["digest"] == device.state.config_digest
    bad = heartbeat() | {"config_digest": "not-a-digest"}
    assert overlord.client.post(beat, json=bad, headers=auth).status_code == 422
    assert overlord.client.post(beat, json=heartbeat(), headers=auth).status_code == 204
    shown = overlord.client.get(effective, headers=overlord.as_admin()).json()
    assert shown["applied_digest"] is None, "an older updater reports none"


def _poll(client: httpx.Client, url: str, auth: dict[str, str], etag: str) -> httpx.Response:
    return client.get(url, headers=auth | {"If-None-Match": etag})


def test_every_replica_drops_its_cached_answer_when_the_configuration_changes(
    database_url: str, repo: Repo
):
    """One replica answers from memory (an hour's cache); a change made on another reaches it
    at each level: the device, its group, the fleet."""
    replica = make_overlord(database_url, repo, cache_ttl_s=3600, change_poll_s=60)
    other = make_overlord(database_url, repo, cache_ttl_s=3600, change_poll_s=60)
    with replica.client, other.client:
        device_id, auth = _in_group(other, "cameras", "DS7")
        url = f"/api/v1/devices/{device_id}/desired-state"
        etag = replica.client.get(url, headers=auth).headers["etag"]
        replica.ctx.keeper.catch_up()
        assert _poll(replica.client, url, auth, etag).status_code == 304
        for path, value in (
            (f"/devices/{device_id}/A", "device"),
            ("/groups/cameras/B", "group"),
            ("/fleet/C", "fleet"),
        ):
            _put(other, path, value)
            # PostgreSQL's NOTIFY may have reached the replica already; the change log
            # (read by its thread every change_poll_s) reaches it on both databases.
            replica.ctx.keeper.catch_up()
            changed = _poll(replica.client, url, auth, etag)
            assert changed.status_code == 200, path
            state = DesiredState.model_validate(changed.json())
            assert state.config[path.rsplit("/", 1)[1]].value == value
            etag = changed.headers["etag"]
