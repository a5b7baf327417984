"""The OpenAPI document says which operations need a token and lists their error answers."""

from __future__ import annotations

from typing import Any

import pytest

from fleetcore.wire import API_PREFIX
from tests.overlord.conftest import Overlord

OPEN = {
    ("get", "/health"),
    ("get", "/metrics"),
    ("post", f"{API_PREFIX}/devices/register"),
}
ERROR_REF = "#/components/schemas/ErrorBody"


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    ]


@pytest.fixture
def schema(overlord: Overlord) -> dict[str, Any]:
    resp = overlord.client.get("/openapi.json")
    assert resp.status_code == 200
    return resp.json()


def test_only_open_operations_need_no_token(schema: dict[str, Any]):
    assert "security" not in schema, "a document-wide requirement marks /health as needing one"
    assert schema["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    operations = _operations(schema)
    assert {(m, p) for m, p, _op in operations} >= OPEN
    for method, path, operation in operations:
        if (method, path) in OPEN:
            assert not operation.get("security"), (method, path)
        else:
            assert operation["security"] == [{"bearer": []}], (method, path)


def test_error_answers_are_listed_with_the_shared_model(schema: dict[str, Any]):
    assert set(schema["components"]["schemas"]["ErrorBody"]["properties"]) == {"detail", "hint"}
    for method, path, operation in _operations(schema):
        responses = operation["responses"]
        expected: set[str] = set()
        if operation.get("security") or path.endswith("/register"):
            expected |= {"401", "403", "429"}
        if "{" in path:
            expected.add("404")
        if path.startswith(API_PREFIX):
            expected.add("503")
            if method in {"post", "put", "patch", "delete"}:
                expected.add("409")
        assert expected <= set(responses), (method, path, sorted(responses))
        for code in expected:
            body = responses[code]["content"]["application/json"]["schema"]
            assert body == {"$ref": ERROR_REF}, (method, path, code)
        if "503" in responses:
            assert "Retry-After" in responses["503"]["headers"]
    assert set(schema["paths"]["/health"]["get"]["responses"]) == {"200"}
    assert "404" in schema["paths"][f"{API_PREFIX}/rollouts"]["post"]["responses"]


def test_a_listed_error_answer_has_the_listed_shape(overlord: Overlord):
    resp = overlord.client.get(f"{API_PREFIX}/devices")
    assert resp.status_code == 401
    assert set(resp.json()) <= {"detail", "hint"}
    resp = overlord.client.get(f"{API_PREFIX}/rollouts/12345", headers=overlord.as_admin())
    assert resp.status_code == 404
    assert set(resp.json()) <= {"detail", "hint"}
