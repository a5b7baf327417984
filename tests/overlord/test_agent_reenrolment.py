"""After an operator rotates a device's credential (``POST /devices/{id}/rotate-credential``,
ADR 0075), the agent enrols again by itself: the real ``fleet-updater run`` on the device's
Python (Debian bookworm's 3.11.2, ``.venv-device``) against a real ``overlord serve``, on
SQLite and on PostgreSQL. Same device id, its key bound again, its requests proved again."""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import yaml

from overlord.auth.models import KeyRole
from simulator.server import stop
from tests.overlord.conftest import create_token
from tests.overlord.servers import overlord_serve, server_env
from tests.overlord.tufrepo import make_repo
from tests.updater.conftest import v1_images
from tests.updater.device import SimDevice
from tests.updater.test_cli import cli
from tests.updater.test_secrets import DEVICE_PYTHON, wait_for
from updater.overlord import Identity

ROOT = Path(__file__).resolve().parents[2]
AGENT = "import sys; from updater.cli import main; sys.exit(main())"


def test_the_agent_enrols_again_after_an_operator_rotates_its_credential(
    database_url: str, tmp_path: Path
):
    if not DEVICE_PYTHON.exists():
        pytest.fail(f"{DEVICE_PYTHON} missing: scripts/test creates it (ensure_device_venv)")
    repo = make_repo(tmp_path / "tuf")
    admin = {"Authorization": f"Bearer {create_token(database_url, KeyRole.ADMIN)}"}
    device = SimDevice.create(
        tmp_path / "device",
        images=v1_images(),
        version="1.0.0",
        root_json=(repo.path / "metadata" / "1.root.json").read_bytes(),
    )
    # The board's serial: what makes the Overlord take the new enrolment as the same device.
    device.roots.device_tree.mkdir(parents=True, exist_ok=True)
    (device.roots.device_tree / "serial-number").write_bytes(b"10000000c0ffee01\0")
    with overlord_serve(server_env(database_url, repo), log=tmp_path / "server.log") as base:
        device.roots.fleet_yaml.write_text(
            yaml.safe_dump(
                {
                    "overlord_url": base,
                    "enrollment_token": create_token(database_url, KeyRole.ENROLLMENT),
                    "hostname": "cam-rotated",
                }
            )
        )
        device.roots.data_config.parent.mkdir(parents=True, exist_ok=True)
        device.roots.data_config.write_text(
            yaml.safe_dump({"poll_min_s": 1, "poll_max_s": 1, "offline_backoff_max_s": 2})
        )
        api = httpx.Client(base_url=f"{base}/api/v1", headers=admin, timeout=10)

        def the_device() -> dict[str, object] | None:
            items = api.get("/devices").raise_for_status().json()["items"]
            assert len(items) <= 1, items  # never a second device
            return items[0] if items else None

        def key_bound() -> bool:
            found = the_device()
            return found is not None and found["key_fingerprint"] is not None

        def seen_after(moment: datetime) -> bool:
            found = the_device()
            return found is not None and datetime.fromisoformat(str(found["last_seen"])) > moment

        log = tmp_path / "agent.log"
        with log.open("wb") as out:
            agent = subprocess.Popen(
                [str(DEVICE_PYTHON), "-c", AGENT, "-v", *cli(device, "run")],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "PYTHONPATH": str(ROOT)},
            )
        try:
            wait_for("the enrolment", key_bound, agent)
            first = the_device()
            assert first is not None
            old = Identity.load(device.roots.identity_file)
            assert old is not None

            rotated = api.post(f"/devices/{first['id']}/rotate-credential").raise_for_status()
            assert rotated.json()["key_fingerprint"] is None
            # Until every replica has seen the revocation the old credential may still pass;
            # only an enrolment binds a key again.
            wait_for("the key bound again", key_bound, agent)
            rebound = api.get(f"/devices/{first['id']}").json()["last_seen"]
            rebound = datetime.fromisoformat(str(rebound))
            wait_for("a heartbeat on the new credential", lambda: seen_after(rebound), agent)
            again = the_device()
        finally:
            stop(agent)
            api.close()
    assert again is not None
    assert again["id"] == first["id"] and again["serial"] == "10000000c0ffee01"
    assert again["key_fingerprint"] == first["key_fingerprint"]  # the same key, bound again
    new = Identity.load(device.roots.identity_file)
    assert new is not None and new.device_id == old.device_id
    assert new.device_token != old.device_token
    text = log.read_text()
    assert "enrolling again" in text
    assert old.device_token not in text and new.device_token not in text
