"""Versioned device files: older majors and unknown fields read, a newer major refused."""

from __future__ import annotations

import json

import pytest

from fleetcore.errors import FormatError
from fleetcore.persisted import LEGACY, FileFormat, FormatTooNew, dump, load


def test_format_one_zero_is_written_without_the_key_as_release_0_1_0_wrote_it():
    raw = dump({"state": "idle"}, current=LEGACY)
    assert json.loads(raw) == {"state": "idle"}
    assert load(raw, current=LEGACY, what="state.json") == {"state": "idle"}


def test_newer_minor_and_unknown_fields_are_read():
    raw = dump({"state": "idle", "later": 1}, current=FileFormat(1, 3))
    assert json.loads(raw)["format"] == "1.3"
    assert load(raw, current=FileFormat(1, 0), what="s") == {"state": "idle", "later": 1}


def test_newer_major_is_refused_with_its_own_error():
    raw = dump({"state": "idle"}, current=FileFormat(2, 0))
    with pytest.raises(FormatTooNew, match="format 2.0, newer than the 1.x"):
        load(raw, current=FileFormat(1, 4), what="state.json")


@pytest.mark.parametrize(
    "raw",
    [b"[]", b'{"format": 2}', b'{"format": "1"}', b'{"format": "01.0"}', b'{"a":1,"a":2}', b"{"],
)
def test_malformed_files_are_format_errors(raw):
    with pytest.raises(FormatError):
        load(raw, current=LEGACY, what="x")
