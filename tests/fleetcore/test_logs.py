"""Text logs for people, JSON lines for journald and Loki."""

from __future__ import annotations

import json
import logging

import pytest

from fleetcore import logs


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("fleet.test", logging.WARNING, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_a_record_is_one_json_object_with_extras_and_the_request_id():
    token = logs.request_id.set("r-42")
    try:
        line = logs.JsonLines().format(_record("refused %s", "x\ny", status=403, path=object()))
    finally:
        logs.request_id.reset(token)
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["message"] == "refused x\ny" and doc["level"] == "warning"
    assert doc["logger"] == "fleet.test" and doc["request_id"] == "r-42"
    assert doc["status"] == 403 and isinstance(doc["path"], str)
    assert doc["time"].endswith("+00:00")


def test_a_traceback_stays_inside_the_line():
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record("failed")
        record.exc_info = __import__("sys").exc_info()
    doc = json.loads(logs.JsonLines().format(record))
    assert "ValueError: boom" in doc["exception"]


@pytest.mark.parametrize(("setting", "json_lines"), [("json", True), ("text", False), ("", False)])
def test_the_format_follows_the_environment(monkeypatch, capsys, setting, json_lines):
    monkeypatch.setenv(logs.FORMAT_ENV, setting)
    logs.configure(logging.INFO)
    logging.getLogger("fleet.test").info("hello")
    err = capsys.readouterr().err.strip()
    if json_lines:
        assert json.loads(err)["message"] == "hello"
    else:
        assert err == "INFO fleet.test: hello"
