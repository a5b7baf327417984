"""Bearer tokens: random, shown once, stored only as a SHA-256 digest.

Tokens carry 256 bits of randomness, so a fast hash is enough: nobody can brute-force the
pre-image, and lookups stay an index hit on every device request.
"""

from __future__ import annotations

import hashlib
import secrets

from overlord.auth.models import KeyRole

_PREFIX = {
    KeyRole.ADMIN: "mfa",
    KeyRole.OPERATOR: "mfo",
    KeyRole.VIEWER: "mfv",
    KeyRole.ENROLLMENT: "mfe",
    KeyRole.DEVICE: "mfd",
}


def new_token(role: KeyRole) -> str:
    return f"{_PREFIX[role]}_{secrets.token_urlsafe(32)}"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
