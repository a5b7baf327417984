"""schemathesis over every operation of the OpenAPI document, with every token role, on SQLite
and PostgreSQL: whatever a client sends, the Overlord never answers 5xx.

Counts: every operation of the document (46 today; the test fails under 30) x 6 roles (no
token, enrollment, device, viewer, operator, admin) x 2 generation modes (schema-valid and
schema-violating; none for an operation with nothing to violate) x ``EXAMPLES`` (8) = about
4,000 requests per database, derandomized so a run is repeatable. Measured on the 2-core CI
machine: about 40 s per database. It found that a key id past 2**31 was a 500 on PostgreSQL.

The device role fuzzes its own device (the path's ``device_id`` is the enrolled device for
every role, so operators reach a real device too), and the enrollment role's token is put in
the register body, where enrolment reads it. Roles run from least to most privileged, so an
admin's generated revocations and decommissions come last.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from overlord import migrate
from overlord.app import create_app
from overlord.auth.models import KeyRole
from overlord.db import make_engine
from overlord.settings import Settings
from tests.overlord.conftest import _truncate, create_token, settings_for
from tests.overlord.tufrepo import make_repo

pytestmark = pytest.mark.integration

EXAMPLES = 8  # per operation, role and generation mode
ROLES = ("none", "enrollment", "device", "viewer", "operator", "admin")


@dataclass
class Fuzzed:
    settings: Settings
    tokens: dict[str, str]
    device_id: str
    enrollment: str


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzzed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fuzzed]:
    root = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    repo = make_repo(root / "tuf")
    repo.add_os("1.0.0")
    repo.add_os("1.1.0")
    repo.add_role("camera", "2.0.0")
    if request.param == "sqlite":
        url = f"sqlite:///{root / 'fuzz.db'}"
        migrate.upgrade(make_engine(url))
    else:
        url = request.getfixturevalue("pg_database")
        engine = make_engine(url)
        _truncate(engine)
        engine.dispose()
    settings = settings_for(url, repo)
    app = create_app(settings)
    tokens = {role.value: create_token(url, role) for role in KeyRole if role is not KeyRole.DEVICE}
    device_id, tokens["device"] = _enroll(app, tokens["enrollment"])
    yield Fuzzed(
        settings=settings,
        tokens=tokens,
        device_id=device_id,
        enrollment=tokens["enrollment"],
    )


def _enroll(app: Any, enrollment: str) -> tuple[str, str]:
    from fastapi.testclient import TestClient

    body = {
        "enrollment_token": enrollment,
        "hostname": "fuzzed",
        "hardware": "pi4",
        "image_version": "1.0.0",
        "booted_slot": "a",
    }
    # No lifespan here: schemathesis runs the app's (its background threads start once).
    answer = TestClient(app).post("/api/v1/devices/register", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()["device_id"], answer.json()["device_token"]


def _fuzz(fuzzed: Fuzzed, operation: Any, role: str, mode: GenerationMode) -> None:
    headers = {"Authorization": f"Bearer {fuzzed.tokens[role]}"} if role != "none" else {}
    fixed = {"device_id": fuzzed.device_id} if "{device_id}" in operation.path else None

    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=fixed))
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        if role == "enrollment" and isinstance(case.body, dict) and "enrollment_token" in case.body:
            case.body["enrollment_token"] = fuzzed.enrollment
        case.call_and_validate(headers=headers, checks=[not_a_server_error])

    check()


@pytest.mark.parametrize("role", ROLES)
def test_no_operation_answers_5xx(fuzzed: Fuzzed, role: str):
    # A fresh app per role: schemathesis runs each app's lifespan, whose threads start once.
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(fuzzed.settings))
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 30
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(fuzzed, operation, role, mode)
            except Unsatisfiable:
                # Nothing to violate: an operation with no parameters and no body.
                assert mode is GenerationMode.NEGATIVE, operation.path
            except Exception as err:  # every operation is fuzzed; all failures are reported
                failures.append(f"{operation.method.upper()} {operation.path} [{mode}]: {err}")
    assert not failures, "\n\n".join(failures)
