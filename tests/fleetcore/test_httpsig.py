"""Device request signatures (ADR 0075): checked-in good and bad requests, and a fuzzed parser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetcore import httpsig

FIXTURES = Path(__file__).parent / "fixtures" / "httpsig"
PUBLIC_KEY = httpsig.decode_public_key((FIXTURES / "public-key.txt").read_text().strip())
WINDOW = 300


def _verify(case: dict[str, object]) -> httpsig.Parsed:
    headers = case["headers"]
    assert isinstance(headers, dict)
    return httpsig.verify(
        headers,
        method=str(case["method"]),
        path=str(case["path"]),
        query=str(case["query"]),
        body=str(case["body"]).encode(),
        public_key=PUBLIC_KEY,
        now=float(str(case["now"])),
        window_s=WINDOW,
    )


@pytest.mark.parametrize("path", sorted((FIXTURES / "good").glob("*.json")), ids=lambda p: p.stem)
def test_known_good_requests_verify(path: Path) -> None:
    assert _verify(json.loads(path.read_text())).keyid == httpsig.fingerprint(PUBLIC_KEY)


@pytest.mark.parametrize("path", sorted((FIXTURES / "bad").glob("*.json")), ids=lambda p: p.stem)
def test_known_bad_requests_are_one_clear_error(path: Path) -> None:
    case = json.loads(path.read_text())
    with pytest.raises(httpsig.SignatureError) as refused:
        _verify(case)
    message = str(refused.value)
    assert case["expect"] in message
    assert "\n" not in message and len(message) < 200


def test_sign_then_verify_round_trip() -> None:
    key = Ed25519PrivateKey.generate()
    headers = httpsig.sign(key, method="post", path="/a", query="b=1", body=b"{}", created=100)
    parsed = httpsig.verify(
        {k.lower(): v for k, v in headers.items()},
        method="POST",
        path="/a",
        query="b=1",
        body=b"{}",
        public_key=httpsig.public_bytes(key),
        now=100 + WINDOW,
        window_s=WINDOW,
    )
    assert parsed.created == 100


@pytest.mark.parametrize("text", ["", "AAAA", "A" * 44, "é" * 44, "A" * 42 + "=="])
def test_a_public_key_is_base64_of_32_bytes(text: str) -> None:
    with pytest.raises(httpsig.SignatureError):
        httpsig.decode_public_key(text)


_header_text = st.text(st.characters(codec="latin-1"), max_size=700)


@settings(max_examples=300, deadline=None)
@given(signature_input=_header_text, signature=_header_text, digest=_header_text)
def test_the_parser_refuses_anything_else_with_one_error(
    signature_input: str, signature: str, digest: str
) -> None:
    good = json.loads((FIXTURES / "good" / "post-heartbeat.json").read_text())
    for name, value in (
        ("signature-input", signature_input),
        ("signature", signature),
        ("content-digest", digest),
    ):
        case = json.loads(json.dumps(good))
        case["headers"][name] = value
        try:
            _verify(case)
        except httpsig.SignatureError:
            continue
        assert value == good["headers"][name]  # only the original value verifies
