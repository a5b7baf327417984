"""boot.sig, the rpi-eeprom-digest format: parse, render, sign, verify."""

import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from fleetcore import bootsig
from fleetcore.bootsig import BootSig, BootSigError

KEYS = Path(__file__).parents[1] / "image" / "fixtures" / "bootkeys"
IMAGE = b"a boot.img stand-in" * 100
DIGEST = hashlib.sha256(IMAGE).digest()


def _private(name: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key((KEYS / name).read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _public(name: str) -> rsa.RSAPublicKey:
    return bootsig.load_public_key((KEYS / name).read_bytes())


def test_sign_render_parse_verify():
    sig = bootsig.sign(DIGEST, _private("customer.pem"), ts=1700000000)
    text = sig.render()
    assert text.splitlines()[:2] == [DIGEST.hex().encode(), b"ts: 1700000000"]
    again = bootsig.parse(text)
    assert again == sig
    bootsig.verify(again, DIGEST, _public("customer.pub.pem"))
    # PKCS#1 v1.5 is deterministic: the same image and key give the same file.
    assert bootsig.sign(DIGEST, _private("customer.pem"), ts=1700000000).render() == text


def test_wrong_key_changed_image_and_no_signature_fail():
    sig = bootsig.sign(DIGEST, _private("customer.pem"), ts=1)
    with pytest.raises(BootSigError, match="does not verify against the key"):
        bootsig.verify(sig, DIGEST, _public("other.pub.pem"))
    with pytest.raises(BootSigError, match="boot.sig names sha256"):
        bootsig.verify(sig, hashlib.sha256(IMAGE + b"x").digest(), _public("customer.pub.pem"))
    # A digest line changed to match a changed image: the signature still covers the old one.
    forged = BootSig(hashlib.sha256(b"evil").hexdigest(), 1, sig.signature)
    with pytest.raises(BootSigError, match="does not verify"):
        bootsig.verify(forged, hashlib.sha256(b"evil").digest(), _public("customer.pub.pem"))
    unsigned = BootSig(DIGEST.hex(), 1, None)
    assert bootsig.parse(unsigned.render()) == unsigned
    with pytest.raises(BootSigError, match="no rsa2048 signature"):
        bootsig.verify(unsigned, DIGEST, _public("customer.pub.pem"))


GOOD = f"{DIGEST.hex()}\nts: 5\nrsa2048: {'ab' * 256}\n"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "does not start with a SHA-256"),
        (GOOD.replace("ts: 5", "ts: soon").encode(), "line 2 is not"),
        (GOOD.replace("rsa2048: ", "rsa4096: ").encode(), "line 3 is not"),
        (GOOD.replace("ab" * 256, "ab" * 255).encode(), "line 3 is not"),
        (GOOD.replace("ab" * 256, "AB" * 256).encode(), "line 3 is not"),
        (GOOD.upper().encode(), "does not start with a SHA-256"),
        ((GOOD + "extra\n").encode(), "does not start with"),
        (GOOD.encode() + b"\xff", "not ASCII"),
        (b"0" * 5000, "more than 4096"),
    ],
)
def test_malformed(data: bytes, expected: str):
    with pytest.raises(BootSigError, match=expected):
        bootsig.parse(data)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("garbage.pem", "not a PEM public key"),
        ("customer.pem", "not a PEM public key"),
    ],
)
def test_public_key_errors(name: str, expected: str):
    with pytest.raises(BootSigError, match=expected):
        bootsig.load_public_key((KEYS / name).read_bytes())


def test_public_key_must_be_rsa_2048():
    big = (
        _private("rsa4096.pem")
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(BootSigError, match="RSA-2048 keys only, not RSA-4096"):
        bootsig.load_public_key(big)
