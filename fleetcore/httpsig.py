"""Device request signatures: the RFC 9421 subset a device and the Overlord share (ADR 0075).

One fixed profile, nothing negotiated: label ``device``, covered components ``@method``,
``@path``, ``@query`` and ``content-digest`` (RFC 9530, SHA-256 of the body, empty body
included), parameters ``created``, ``nonce`` (so two identical requests in one second
differ), ``keyid`` (the key's fingerprint) and ``alg="ed25519"``.
``@path``/``@query`` rather than ``@target-uri``: nginx terminates TLS and rewrites the
scheme and host, never the path. Anything else in the headers is refused, not ignored, so
the parser has one accepted shape and every other input is one :class:`SignatureError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fleetcore.errors import FleetError

LABEL = "device"
COMPONENTS = ("@method", "@path", "@query", "content-digest")
ALG = "ed25519"
# Longer headers are refused before any parsing: a real one is about 190 characters.
MAX_INPUT = 512
MAX_SIGNATURE = 128
PUBLIC_KEY_BYTES = 32

_INPUT = re.compile(
    r'device=\("@method" "@path" "@query" "content-digest"\)'
    r";created=(?P<created>[0-9]{1,12})"
    r';nonce="(?P<nonce>[0-9a-f]{32})"'
    r';keyid="(?P<keyid>[0-9a-f]{64})"'
    r';alg="ed25519"'
)
_SIGNATURE = re.compile(r"device=:(?P<sig>[A-Za-z0-9+/]{86}==):")
_DIGEST = re.compile(r"sha-256=:(?P<digest>[A-Za-z0-9+/]{43}=):")


class SignatureError(FleetError):
    """A request signature that is missing, malformed, stale or does not verify."""


@dataclass(frozen=True)
class Parsed:
    created: int
    nonce: str
    keyid: str
    signature: bytes


def fingerprint(public_key: bytes) -> str:
    """The key id: SHA-256 of the raw 32-byte public key, in hex."""
    return hashlib.sha256(public_key).hexdigest()


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    # Not public_bytes_raw(): bookworm's cryptography (38) predates it.
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def decode_public_key(text: str) -> bytes:
    """A public key as enrolment sends it: base64 of the raw 32 bytes."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise SignatureError("the public key is not base64") from err
    if len(raw) != PUBLIC_KEY_BYTES:
        raise SignatureError(f"the public key is {len(raw)} bytes, not {PUBLIC_KEY_BYTES}")
    return raw


def content_digest(body: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"


def _params(created: int, nonce: str, keyid: str) -> str:
    covered = " ".join(f'"{c}"' for c in COMPONENTS)
    return f'({covered});created={created};nonce="{nonce}";keyid="{keyid}";alg="{ALG}"'


def _base(method: str, path: str, query: str, digest: str, params: str) -> bytes:
    lines = (
        f'"@method": {method.upper()}',
        f'"@path": {path}',
        f'"@query": ?{query}',
        f'"content-digest": {digest}',
        f'"@signature-params": {params}',
    )
    return "\n".join(lines).encode()


def sign(
    key: Ed25519PrivateKey, *, method: str, path: str, query: str, body: bytes, created: int
) -> dict[str, str]:
    """The three headers that sign one request (``query`` without its ``?``)."""
    digest = content_digest(body)
    params = _params(created, secrets.token_hex(16), fingerprint(public_bytes(key)))
    signature = key.sign(_base(method, path, query, digest, params))
    return {
        "Content-Digest": digest,
        "Signature-Input": f"{LABEL}={params}",
        "Signature": f"{LABEL}=:{base64.b64encode(signature).decode()}:",
    }


def _header(headers: Mapping[str, str], name: str, limit: int) -> str:
    value = headers.get(name.lower())
    if value is None:
        raise SignatureError(f"the request has no {name} header")
    if len(value) > limit:
        raise SignatureError(f"the {name} header is longer than {limit} characters")
    return value


def parse(headers: Mapping[str, str]) -> Parsed:
    """The signature's parameters, from lower-case header names; never verifies."""
    match = _INPUT.fullmatch(_header(headers, "Signature-Input", MAX_INPUT))
    if match is None:
        raise SignatureError(
            "the Signature-Input header is not this Overlord's profile "
            '(device=("@method" "@path" "@query" "content-digest");created;nonce;keyid;alg)'
        )
    sig = _SIGNATURE.fullmatch(_header(headers, "Signature", MAX_SIGNATURE))
    if sig is None:
        raise SignatureError("the Signature header is not one base64 ed25519 signature")
    return Parsed(
        int(match["created"]), match["nonce"], match["keyid"], base64.b64decode(sig["sig"])
    )


def verify(
    headers: Mapping[str, str],
    *,
    method: str,
    path: str,
    query: str,
    body: bytes,
    public_key: bytes,
    now: float,
    window_s: int,
) -> Parsed:
    """Check a request's signature against ``public_key``; the parsed signature if it holds.

    ``created`` must be within ``window_s`` of ``now`` either way: older is a replay or a
    clock that is behind, newer a clock that is ahead. The digest header must match the body.
    """
    parsed = parse(headers)
    if parsed.keyid != fingerprint(public_key):
        raise SignatureError("the request is signed with a key that is not the device's")
    skew = int(now) - parsed.created
    if abs(skew) > window_s:
        raise SignatureError(
            f"the signature was created {skew} s from the Overlord's clock "
            f"(at most {window_s} s either way)"
        )
    digest = _header(headers, "Content-Digest", 64)
    if _DIGEST.fullmatch(digest) is None or digest != content_digest(body):
        raise SignatureError("the Content-Digest header does not match the body")
    params = _params(parsed.created, parsed.nonce, parsed.keyid)
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            parsed.signature, _base(method, path, query, digest, params)
        )
    except InvalidSignature as err:
        raise SignatureError("the request signature does not verify") from err
    return parsed
