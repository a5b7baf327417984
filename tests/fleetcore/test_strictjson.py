"""Strict JSON: one reading for every reader, one FormatError for every defect."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetcore.errors import FormatError
from fleetcore.strictjson import DuplicateKeyError, loads


def test_plain_documents_parse_as_json_does():
    doc = {"a": [1, 2.5, None, True, "x\u00e9"], "b": {"c": {}}}
    assert loads(json.dumps(doc).encode(), what="doc") == doc


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"chunks": [], "chunks": [1]}', "duplicate key 'chunks'"),
        (b'{"a": {"b": 1, "b": 2}}', "duplicate key 'b'"),
        (b"NaN", "NaN is not a JSON number"),
        (b'{"x": -Infinity}', "-Infinity is not a JSON number"),
        (b'"\\ud800"', "lone UTF-16 surrogate"),
        (b'{"\\udfff": 1}', "lone UTF-16 surrogate"),
        (b"\xff\xfe", "not valid JSON"),
        (b'{"a": 1', "not valid JSON"),
        (b"[" * 100_000, "nests deeper than 64"),
    ],
)
def test_defects_are_one_format_error_naming_the_document(raw, message):
    with pytest.raises(FormatError, match=message) as info:
        loads(raw, what="the index")
    assert str(info.value).startswith("the index")


def test_duplicate_key_has_its_own_type_and_size_cap_applies():
    with pytest.raises(DuplicateKeyError):
        loads(b'{"a": 1, "a": 1}', what="x")
    with pytest.raises(FormatError, match="larger than 4 bytes"):
        loads(b"[1, 2]", what="x", max_bytes=4)


def test_brackets_inside_strings_do_not_count_as_nesting():
    doc = {"s": "[" * 1000 + "{" * 1000}
    assert loads(json.dumps(doc), what="x") == doc


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=512))
def test_any_bytes_parse_or_raise_format_error(data):
    with contextlib.suppress(FormatError):
        loads(data, what="fuzz")
