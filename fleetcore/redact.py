"""Secrets out of messages: what errors and logs may say about a URL or a value.

Device logs go to Loki (the ``system`` role), so an error that quotes a proxy URL with its
password, or a validation error that quotes a token, leaks it. Messages are built from these
helpers instead of from the raw values.
"""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@'\"]*@")
MASK = "***"


def url(text: str) -> str:
    """``text`` with the user-info of every URL in it replaced by ``***``."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)


def secrets(text: str, *values: str | None) -> str:
    """``text`` with every given secret value (of 4 characters or more) masked, URLs too."""
    for value in values:
        if value and len(value) >= 4:
            text = text.replace(value, MASK)
    return url(text)
