"""CSRF protection of the dashboard's forms (operator actions).

The session cookie is already ``SameSite=Strict`` and ``HttpOnly``; on top of that every
state-changing form carries a token that only a page rendered for this session can know:
an HMAC of a fixed label keyed with the session cookie (256 random bits, never readable by
scripts or other sites), so nothing extra is stored and any replica can check it. A request
whose ``Origin`` header names another host is refused as well.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request

from overlord.auth.origin import names_host
from overlord.errors import Forbidden

_LABEL = b"overlord dashboard form"


def token_for(cookie: str) -> str:
    return hmac.new(cookie.encode(), _LABEL, hashlib.sha256).hexdigest()


def check(request: Request, cookie: str, submitted: str) -> None:
    """Raise Forbidden unless ``submitted`` is this session's token from this site."""
    origin = request.headers.get("origin")
    if origin is not None and not names_host(origin, request.url.hostname):
        raise Forbidden("this form was sent from another site")
    if not hmac.compare_digest(token_for(cookie), submitted):
        raise Forbidden("the form is stale or forged; reload the page and try again")
