"""JSON from outside, parsed so that every reader sees the same document.

The standard parser keeps the last of two equal keys, accepts ``NaN`` and ``Infinity`` and
lone UTF-16 surrogates, and recurses once per nesting level. A document with a duplicated key
means one thing to a reader that keeps the first and another to one that keeps the last (the
publisher and the device would read different chunk lists), so it is refused here, as are
non-finite numbers, lone surrogates, deep nesting and oversized input. Every failure is one
:class:`fleetcore.errors.FormatError` naming ``what``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fleetcore.errors import FormatError

# Far below Python's recursion limit, far above any document of ours (TUF metadata: ~6).
MAX_DEPTH = 64
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class DuplicateKeyError(FormatError):
    """A JSON object names the same key twice."""


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(f"duplicate key {key[:64]!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise FormatError(f"{name} is not a JSON number")


def _depth(data: bytes) -> int:
    """An upper bound of the nesting depth (brackets inside strings count too)."""
    depth = deepest = 0
    for match in re.finditer(rb'[\[{\]}]|"(?:[^"\\]|\\.)*"', data):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def _check_surrogates(value: Any) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            raise FormatError("a string holds a lone UTF-16 surrogate") from err
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_surrogates(key)
            _check_surrogates(item)
    elif isinstance(value, list):
        for item in value:
            _check_surrogates(item)


def loads(data: bytes | str, *, what: str, max_bytes: int | None = None) -> Any:
    """Parse ``data`` strictly; raise :class:`FormatError` naming ``what`` on any defect."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if max_bytes is not None and len(raw) > max_bytes:
        raise FormatError(f"{what} is larger than {max_bytes} bytes")
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _depth(raw) > MAX_DEPTH:
        raise FormatError(f"{what} nests deeper than {MAX_DEPTH} levels")
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_unique, parse_constant=_no_constant)
        if _SURROGATE_ESCAPE.search(raw):  # the only way JSON can spell a lone surrogate
            _check_surrogates(value)
    except FormatError as err:
        raise type(err)(f"{what}: {err}") from err
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise FormatError(f"{what} is not valid JSON: {str(err)[:200]}") from err
    return value
