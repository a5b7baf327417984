"""Signed device requests (ADR 0075) through the shipped nginx config to a real Overlord.

nginx terminates TLS and proxies to `overlord serve`; the updater's own client signs
``@method``, ``@path``, ``@query`` and the body digest. What nginx passes must verify, on
PostgreSQL, and the bare token must not.
"""

from __future__ import annotations

import base64
import ssl
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from fleetcore import httpsig
from fleetcore.wire import Event, EventBatch, EventKind, Heartbeat, RegisterRequest
from overlord.auth.models import KeyRole
from overlord.db import make_engine
from simulator.server import serve
from tests.ops.nginxrun import Echo, run_nginx, serve_upstreams
from tests.overlord.conftest import _truncate, create_token, heartbeat, pg_database  # noqa: F401
from tests.overlord.tufrepo import make_repo
from updater import devicekey
from updater.overlord import OverlordClient, OverlordRejected

pytestmark = pytest.mark.integration


def test_signed_requests_pass_through_nginx_and_a_bare_token_does_not(
    pg_database: str,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    engine = make_engine(pg_database)
    _truncate(engine)
    engine.dispose()
    repo = make_repo(tmp_path / "tuf")
    env = {
        "OVERLORD_DATABASE_URL": pg_database,
        "OVERLORD_REPO_DIR": str(repo.path),
        "OVERLORD_KEYS_DIR": str(repo.keydir),
        "OVERLORD_RUN_SCHEDULER": "false",
    }
    with (
        serve(env=env, log=tmp_path / "overlord.log") as overlord,
        serve_upstreams({"grafana": Echo, "loki": Echo}) as others,
    ):
        port = int(overlord.rsplit(":", 1)[1])
        with run_nginx(tmp_path / "nginx", others | {"overlord": port}) as (base, _, cert):
            trust = ssl.create_default_context(cafile=str(cert))
            device = OverlordClient(base, timeout=10, transport=httpx.HTTPTransport(verify=trust))
            thief = OverlordClient(base, timeout=10, transport=httpx.HTTPTransport(verify=trust))
            try:
                device.key = devicekey.create(tmp_path / "device-key.pem")
                identity = device.register(
                    RegisterRequest.model_validate(
                        {
                            "enrollment_token": create_token(pg_database, KeyRole.ENROLLMENT),
                            "hostname": "pi-nginx",
                            "hardware": "pi5",
                            "serial": "NGINX1",
                            "image_version": "1.0.0",
                            "booted_slot": "a",
                            "public_key": base64.b64encode(
                                httpsig.public_bytes(device.key)
                            ).decode(),
                        }
                    )
                )
                state, etag = device.desired_state(None)
                assert state is not None and device.desired_state(etag) == (None, etag)
                device.heartbeat(Heartbeat.model_validate(heartbeat("1.0.0")))
                batch = EventBatch(
                    events=[Event(seq=1, time=datetime.now(UTC), kind=EventKind.ENROLLED)]
                )
                assert device.send_events(batch).accepted == 1
                thief.identity = identity
                with pytest.raises(OverlordRejected) as refused:
                    thief.desired_state(None)
                assert refused.value.status == 401
            finally:
                device.close()
                thief.close()
