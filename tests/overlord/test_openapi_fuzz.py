"""schemathesis against the OpenAPI document: whatever the input, never a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from overlord import migrate
from overlord.app import create_app
from overlord.auth.models import KeyRole
from overlord.db import make_engine
from tests.overlord.conftest import create_token, settings_for
from tests.overlord.tufrepo import make_repo


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> tuple[schemathesis.BaseSchema, str]:
    root = tmp_path_factory.mktemp("fuzz")
    repo = make_repo(root / "tuf")
    repo.add_os("1.0.0")
    url = f"sqlite:///{root / 'fuzz.db'}"
    migrate.upgrade(make_engine(url))
    app = create_app(settings_for(url, repo))
    return schemathesis.openapi.from_asgi("/openapi.json", app), create_token(url, KeyRole.ADMIN)


def test_no_server_errors(fuzzed):
    """Every operation, with generated valid and invalid input, as an admin."""
    schema, token = fuzzed
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case):
            case.call_and_validate(
                headers={"Authorization": f"Bearer {token}"}, checks=[not_a_server_error]
            )

        check()
