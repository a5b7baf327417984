"""Whether a browser's ``Origin`` header names this Overlord.

Host names only: behind a TLS proxy the scheme and port the application sees differ from
the browser's (nginx passes ``Host`` without the port).
"""

from __future__ import annotations

from urllib.parse import urlsplit


def names_host(origin: str, hostname: str | None) -> bool:
    return hostname is not None and urlsplit(origin).hostname == hostname
