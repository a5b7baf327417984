"""Python's ``$`` also matches before a final newline: every identifier check matches whole.

A name such as ``"<digest>\\n"`` once passed the chunk-path check and would have put a newline
into a URL path; ``Version("1.0.0\\n")`` was a version. Each check below is given the valid
value, then the same value with a trailing newline.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fleetcore.errors import FleetError
from fleetcore.release import chunk_path
from fleetcore.rolebundle.spec import is_pinned
from fleetcore.version import Version
from updater.roles.decide import valid_name

DIGEST = "ab" * 32


def _accepts(check: Callable[[str], object], value: str) -> bool:
    try:
        return check(value) is not False
    except FleetError:
        return False


CHECKS: list[tuple[str, Callable[[str], object], str]] = [
    ("chunk_path", chunk_path, DIGEST),
    ("is_pinned", is_pinned, f"busybox@sha256:{DIGEST}"),
    ("role name", valid_name, "camera"),
    ("version", Version, "1.0.0"),
]


@pytest.mark.parametrize(("what", "check", "value"), CHECKS, ids=[c[0] for c in CHECKS])
def test_a_trailing_newline_is_refused(what: str, check: Callable[[str], object], value: str):
    assert _accepts(check, value), what
    assert not _accepts(check, value + "\n"), what
