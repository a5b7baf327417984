"""Hostile request input: every defect is one 4xx, nothing is stored, nothing is logged.

Each case answered 500 (or was stored) before: NaN and duplicate keys were parsed leniently,
a zone offset carried an event time out of range at flush, NUL bytes reached PostgreSQL,
32 long labels overflowed their index column, and a failing statement quoted its parameters
into the server log. The same cases run on SQLite and on real PostgreSQL.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select, text

from fleetcore.net import free_port
from overlord.db import make_engine
from overlord.devices import service as device_service
from overlord.models import Base
from tests.overlord.conftest import Overlord, heartbeat, make_overlord
from tests.overlord.tufrepo import Repo

SECRET = "mfe_hostile-input-secret-never-logged"
JSON = {"Content-Type": "application/json"}
REGISTER = "/api/v1/devices/register"


def _register(**change: object) -> dict[str, object]:
    body = {
        "enrollment_token": SECRET,
        "hostname": "pi",
        "hardware": "pi4",
        "image_version": "1.0.0",
        "booted_slot": "a",
    }
    return body | change


def _event(**change: object) -> dict[str, object]:
    return {"events": [{"seq": 1, "time": "2026-01-01T00:00:00Z", "kind": "enrolled"} | change]}


def _raw(document: object) -> bytes:
    # json.dumps writes a lone surrogate as its \\uXXXX escape, as a hostile client would.
    return json.dumps(document).encode()


def _long_labels(count: int) -> dict[str, str]:
    return {f"k{i:02d}" + "x" * 60: "v" * 63 for i in range(count)}


# (what, method, path, request kwargs, who): {dev} is the enrolled device's id.
Case = tuple[str, str, str, dict[str, Any], str]
CASES: list[Case] = [
    ("nan-body-no-auth", "POST", REGISTER, {"content": b"NaN"}, "none"),
    ("nan-field", "POST", REGISTER, {"content": b'{"enrollment_token": NaN}'}, "none"),
    ("infinity-in-event-data", "POST", "/api/v1/devices/{dev}/events",
     {"content": b'{"events": [{"seq": 1, "time": "2026-01-01T00:00:00Z", "kind": "enrolled",'
                 b' "data": {"k": Infinity}}]}'}, "device"),
    ("duplicate-key-escalates-role", "POST", "/api/v1/tokens",
     {"content": b'{"role": "viewer", "role": "admin"}'}, "admin"),
    ("duplicate-key-heartbeat", "POST", "/api/v1/devices/{dev}/heartbeat",
     {"content": _raw(heartbeat())[:-1] + b', "health": "healthy"}'}, "device"),
    ("surrogate-in-message", "POST", "/api/v1/devices/{dev}/events",
     {"content": _raw(_event(message="a\ud800b"))}, "device"),
    ("surrogate-in-data-key", "POST", "/api/v1/devices/{dev}/events",
     {"content": _raw(_event(data={"\udc00": 1}))}, "device"),
    ("surrogate-in-hostname", "POST", REGISTER,
     {"content": _raw(_register(hostname="pi\udfff"))}, "none"),
    ("time-past-9999-in-utc", "POST", "/api/v1/devices/{dev}/events",
     {"json": _event(time="9999-12-31T23:59:59-23:59")}, "device"),
    ("time-before-year-1-in-utc", "POST", "/api/v1/devices/{dev}/events",
     {"json": _event(time="0001-01-01T00:00:00+14:00")}, "device"),
    ("time-year-10000", "POST", "/api/v1/devices/{dev}/events",
     {"json": _event(time="10000-01-01T00:00:00Z")}, "device"),
    ("time-huge-epoch", "POST", "/api/v1/devices/{dev}/events",
     {"json": _event(time=1e20)}, "device"),
    ("time-naive", "POST", "/api/v1/devices/{dev}/events",
     {"json": _event(time="2026-01-01T00:00:00")}, "device"),
    ("seq-past-int64", "POST", "/api/v1/devices/{dev}/events",
     {"json": _event(seq=2**63)}, "device"),
    ("token-lifetime-overflow", "POST", "/api/v1/tokens",
     {"json": {"role": "viewer", "expires_in_s": 10**20}}, "admin"),
    ("nul-in-hostname", "POST", REGISTER, {"json": _register(hostname="pi\x00")}, "none"),
    ("nul-in-serial", "POST", REGISTER, {"json": _register(serial="S\x00")}, "none"),
    ("nul-in-event-data-key", "POST", "/api/v1/devices/{dev}/events",
     {"json": _event(data={"k\x00": 1})}, "device"),
    ("nul-in-event-data-value", "POST", "/api/v1/devices/{dev}/events",
     {"json": _event(data={"k": "v\x00"})}, "device"),
    ("nul-in-group-description", "PUT", "/api/v1/groups/lab",
     {"json": {"description": "a\x00"}}, "admin"),
    ("nul-in-token-name", "POST", "/api/v1/tokens",
     {"json": {"role": "viewer", "name": "a\x00"}}, "admin"),
    ("nul-in-query-role", "GET", "/api/v1/devices", {"params": {"role": "a\x00"}}, "admin"),
    ("nul-in-query-label", "GET", "/api/v1/devices", {"params": {"label": "a\x00=b"}}, "admin"),
    ("nul-in-query-version", "GET", "/api/v1/devices",
     {"params": {"image_version": "1\x00"}}, "admin"),
    ("nul-in-query-group", "GET", "/api/v1/devices", {"params": {"group": "g\x00"}}, "admin"),
    ("nul-in-path-device-id", "GET", "/api/v1/devices/dev%00", {}, "admin"),
    ("long-path-device-id", "PATCH", "/api/v1/devices/" + "d" * 33,
     {"json": {"safe_mode": True}}, "admin"),
    ("32-long-labels", "PATCH", "/api/v1/devices/{dev}",
     {"json": {"labels": _long_labels(32)}}, "admin"),
    ("role-names-past-their-index", "POST", "/api/v1/devices/{dev}/heartbeat",
     {"json": heartbeat() | {"roles": [
         {"name": f"r{i:02d}" + "x" * 61, "version": None, "health": "healthy"}
         for i in range(64)]}}, "device"),
    # Path ids past their column's type (api_keys.id is a 32-bit integer on PostgreSQL).
    ("key-id-past-int32", "DELETE", f"/api/v1/tokens/{2**31}", {}, "admin"),
    ("rollout-id-past-int64", "GET", f"/api/v1/rollouts/{2**63}", {}, "admin"),
    ("alert-id-past-int64", "POST", f"/api/v1/alerts/{2**63}/resolve", {}, "admin"),
    ("hardware-list-past-the-boards", "POST", "/api/v1/rollouts",
     {"json": {"name": "r", "kind": "os", "version": "1.1.0",
               "selector": {"hardware": ["pi4"] * 4}}}, "admin"),
]  # fmt: skip


def _row_counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {
                table.name: conn.scalar(select(func.count()).select_from(table)) or 0
                for table in Base.metadata.sorted_tables
            }
    finally:
        engine.dispose()


def _credentials(overlord: Overlord) -> tuple[str, dict[str, dict[str, str]]]:
    device_id, device_auth = overlord.enroll("HOSTILE")
    return device_id, {"none": {}, "device": device_auth, "admin": overlord.as_admin()}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_is_a_422_and_stores_nothing(overlord: Overlord, case: Case):
    _what, method, path, kwargs, who = case
    device_id, auth = _credentials(overlord)
    before = _row_counts(overlord.settings.database_url)
    headers = auth[who] | (JSON if "content" in kwargs else {})
    answer = overlord.client.request(method, path.format(dev=device_id), headers=headers, **kwargs)
    assert answer.status_code == 422, answer.text
    assert _row_counts(overlord.settings.database_url) == before


def test_a_body_that_is_not_strict_json_is_refused_as_json(overlord: Overlord):
    """NaN, duplicate keys and lone surrogates are refused by the parser, not by a field."""
    for content in (b"NaN", b'{"a": 1, "a": 2}', b'"\\ud800"', b"[" * 100 + b"]" * 100):
        answer = overlord.client.post(REGISTER, content=content, headers=JSON)
        assert answer.status_code == 422
        (detail,) = answer.json()["detail"]
        assert detail["type"] == "json_invalid"
        assert '"a"' not in detail["msg"]  # the duplicated key is the client's input


def test_bounds_accept_what_fits(overlord: Overlord):
    """The limits refuse only what cannot be stored: 31 long labels and a far zone fit."""
    device_id, auth = _credentials(overlord)
    admin = overlord.as_admin()
    labels = _long_labels(31)
    answer = overlord.client.patch(
        f"/api/v1/devices/{device_id}", json={"labels": labels}, headers=admin
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["labels"] == labels
    sent = _event(time="2026-01-01T10:00:00+14:00", data={"k": "v", "n": -(2**63), "f": 0.5})
    answer = overlord.client.post(
        f"/api/v1/devices/{device_id}/events", json=sent, headers=auth["device"]
    )
    assert answer.status_code == 200, answer.text
    (stored,) = overlord.client.get(f"/api/v1/devices/{device_id}/events", headers=admin).json()[
        "items"
    ]
    assert stored["time"] == "2025-12-31T20:00:00Z"
    assert stored["data"] == {"k": "v", "n": -(2**63), "f": 0.5}


HUNDRED_MB = 100 << 20


def _huge_fields(device_id: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    huge = "x" * HUNDRED_MB
    role = {"name": huge, "version": None, "health": "healthy"}
    return [
        ("role name", "POST", f"/api/v1/devices/{device_id}/heartbeat",
         {"json": heartbeat() | {"roles": [role]}}),
        ("label", "PATCH", f"/api/v1/devices/{device_id}", {"json": {"labels": {"k": huge}}}),
        ("hostname", "POST", REGISTER, {"json": _register(hostname=huge)}),
    ]  # fmt: skip


def test_a_100_mb_field_is_refused_and_nothing_is_stored(database_url: str, repo: Repo):
    """With the body limit lifted, the field bounds alone refuse 100 MB values."""
    overlord = make_overlord(database_url, repo, max_json_bytes=4 * HUNDRED_MB)
    with overlord.client:
        device_id, auth = _credentials(overlord)
        who = {"role name": auth["device"], "label": auth["admin"], "hostname": {}}
        before = _row_counts(database_url)
        for what, method, path, kwargs in _huge_fields(device_id):
            answer = overlord.client.request(method, path, headers=who[what], **kwargs)
            assert answer.status_code == 422, what
            assert len(answer.content) < 2000, what
        assert _row_counts(database_url) == before
        device = overlord.client.get(f"/api/v1/devices/{device_id}", headers=auth["admin"])
        assert device.json()["labels"] == {}
        assert device.json()["roles"] == []


# Secrets in logs ---------------------------------------------------------------------------

_LOGGERS = ("", "overlord", "uvicorn", "uvicorn.error", "uvicorn.access", "fastapi", "starlette",
            "sqlalchemy", "sqlalchemy.engine")  # fmt: skip


@pytest.fixture
def served(overlord: Overlord) -> Iterator[str]:
    """The same app under a real uvicorn server in this process, so its logging is captured."""
    port = free_port()
    config = uvicorn.Config(
        overlord.client.app, host="127.0.0.1", port=port, log_config=None, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _failing_register(session: Any, *, request: Any, require_signatures: bool) -> None:
    # A statement the database refuses, with the request's secret as a parameter: how a
    # driver error carried client input into the server log.
    session.execute(
        text("SELECT 1 FROM no_such_table WHERE x = :token"), {"token": request.enrollment_token}
    )


def test_no_request_body_is_logged(
    overlord: Overlord,
    served: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
):
    """Bad bodies carrying a token, with every server logger at DEBUG: the token never shows."""
    for name in _LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    device_id, auth = _credentials(overlord)
    secret_body = _register()
    bodies: list[tuple[str, str, bytes, dict[str, str]]] = [
        ("POST", REGISTER, f'{{"enrollment_token": "{SECRET}", "hostname": NaN}}'.encode(), {}),
        ("POST", REGISTER, f'{{"enrollment_token": "{SECRET}", '.encode(), {}),
        ("POST", REGISTER, _raw(secret_body | {"enrollment_token": SECRET + "\ud800"}), {}),
        ("POST", REGISTER, _raw(secret_body | {"hostname": SECRET + "\x00"}), {}),
        ("POST", REGISTER, _raw(secret_body | {"hardware": SECRET}), {}),
        ("POST", "/api/v1/tokens", _raw({"role": "viewer", "name": SECRET * 10}), auth["admin"]),
        ("POST", f"/api/v1/devices/{device_id}/events",
         _raw(_event(message=SECRET, time="9999-12-31T23:59:59-23:59")), auth["device"]),
        ("POST", f"/api/v1/devices/{device_id}/heartbeat",
         _raw(heartbeat() | {"node_exporter": SECRET}), auth["device"]),
    ]  # fmt: skip
    with httpx.Client(base_url=served, timeout=30) as client:
        for method, path, content, headers in bodies:
            answer = client.request(method, path, content=content, headers=headers | JSON)
            assert answer.status_code == 422, answer.text
        monkeypatch.setattr(device_service, "register", _failing_register)
        answer = client.post(REGISTER, content=_raw(secret_body), headers=JSON)
        assert answer.status_code == 500
    assert "no_such_table" in caplog.text  # the failure itself is logged...
    assert SECRET not in caplog.text  # ...but never what the client sent
    for record in caplog.records:
        assert SECRET not in repr(record.args)


# Every input has a bound ------------------------------------------------------------------

_UNBOUNDED_QUANTIFIER = re.compile(r"(?<!\\)[+*]|\{\d+,\}")


def _unbounded(node: Any, schemas: dict[str, Any], where: str) -> Iterator[str]:
    """Paths in a JSON schema where a string, list, map or integer has no upper bound."""
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            yield from _unbounded(schemas[name], schemas, f"{where}>{name}")
            return
        kind = node.get("type")
        if kind == "string" and not (
            "maxLength" in node
            or "enum" in node
            or "const" in node
            or node.get("format") in {"date-time", "time"}
            or ("pattern" in node and not _UNBOUNDED_QUANTIFIER.search(node["pattern"]))
        ):
            yield where
        if kind == "array" and "maxItems" not in node:
            yield where
        if kind == "object" and "maxProperties" not in node and "properties" not in node:
            yield where
        if kind == "integer" and ("maximum" not in node or "minimum" not in node):
            yield where
        for key, child in node.items():
            if key in {"properties", "patternProperties"}:
                for name, sub in child.items():
                    yield from _unbounded(sub, schemas, f"{where}.{name}")
            elif key in {"items", "additionalProperties", "propertyNames"}:
                yield from _unbounded(child, schemas, f"{where}[]")
            elif key in {"anyOf", "oneOf", "allOf"}:
                for sub in child:
                    yield from _unbounded(sub, schemas, where)


def test_every_string_list_and_number_a_client_sends_is_bounded(overlord: Overlord):
    """Walks the OpenAPI document: request bodies, path and query parameters (headers are
    bounded by the HTTP server), so a field added without a bound fails here."""
    document = overlord.app.openapi()
    schemas = document["components"]["schemas"]
    found: list[str] = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            for parameter in operation.get("parameters", []):
                if parameter["in"] in {"path", "query"}:
                    found += _unbounded(
                        parameter["schema"], schemas, f"{where} {parameter['name']}"
                    )
            for content in operation.get("requestBody", {}).get("content", {}).values():
                found += _unbounded(content["schema"], schemas, f"{where} body")
    assert found == []
