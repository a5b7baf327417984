"""Refused and failed requests are logged once each, with the request id and never a secret."""

from __future__ import annotations

import json
import logging

import pytest

from fleetcore import logs
from overlord.requestlog import level_for
from tests.overlord.conftest import Overlord


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def _request_lines(records: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in records.records if r.name == "overlord.requests"]


def test_a_refusal_is_logged_with_the_request_id_nginx_gave(overlord: Overlord, records):
    secret = "mfd_" + "s3cret" * 6
    answer = overlord.client.get(
        "/api/v1/devices?token=" + secret,
        headers={"Authorization": f"Bearer {secret}", "X-Request-ID": "abc123"},
    )
    assert answer.status_code == 401 and answer.headers["X-Request-ID"] == "abc123"
    (line,) = _request_lines(records)
    assert line.levelno == logging.WARNING and line.status == 401  # type: ignore[attr-defined]
    assert line.getMessage() == "GET /api/v1/devices answered 401"
    formatted = logs.JsonLines().format(line)
    assert secret not in formatted
    assert json.loads(formatted)["status"] == 401


def test_a_request_without_an_id_gets_one_and_a_forged_one_is_replaced(overlord: Overlord):
    made = overlord.client.get("/health").headers["X-Request-ID"]
    assert len(made) == 32
    forged = overlord.client.get("/health", headers={"X-Request-ID": "a b\tc"})
    assert forged.headers["X-Request-ID"] not in ("a b\tc", made)


def test_success_is_not_logged_and_a_bad_body_is(overlord: Overlord, records):
    assert overlord.client.get("/health").status_code == 200
    assert _request_lines(records) == []
    token = overlord.enrollment
    answer = overlord.client.post(
        "/api/v1/devices/register", content=b'{"enrollment_token": "' + token.encode() + b'", "x": '
    )
    assert answer.status_code == 422
    (line,) = _request_lines(records)
    assert line.levelno == logging.WARNING
    assert token not in "\n".join(logs.JsonLines().format(r) for r in records.records)


@pytest.mark.parametrize(
    ("status", "level"),
    [
        (200, None),
        (304, None),
        (404, logging.INFO),
        (409, logging.INFO),
        (401, logging.WARNING),
        (413, logging.WARNING),
        (429, logging.WARNING),
        (500, logging.ERROR),
        (503, logging.ERROR),
    ],
)
def test_levels(status: int, level: int | None):
    assert level_for(status) == level
