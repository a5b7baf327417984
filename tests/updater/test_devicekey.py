"""The device's ed25519 key on /data: made once, 0600, a corrupt one replaced, not a crash."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from fleetcore import httpsig
from updater import devicekey


def test_the_key_is_made_once_and_readable_by_root_only(tmp_path: Path) -> None:
    path = tmp_path / "fleet" / "device-key.pem"
    first = devicekey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = devicekey.load_or_create(path)
    assert httpsig.public_bytes(again) == httpsig.public_bytes(first)
    assert [p.name for p in path.parent.iterdir()] == ["device-key.pem"]  # no temp left


@pytest.mark.parametrize(
    "content",
    [b"", b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2Vw", b"\x00" * 5000, b"not a key"],
    ids=["empty", "truncated", "huge", "garbage"],
)
def test_a_corrupt_key_is_one_error_line_and_replaced(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "device-key.pem"
    path.write_bytes(content)
    with pytest.raises(devicekey.DeviceKeyError) as refused:
        devicekey.load(path)
    assert "\n" not in str(refused.value)
    with caplog.at_level(logging.ERROR):
        key = devicekey.load_or_create(path)
    assert devicekey.load(path) is not None and key is not None
    assert (tmp_path / "device-key.pem.corrupt").read_bytes() == content
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1


def test_a_key_of_another_type_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    path = tmp_path / "device-key.pem"
    ec = generate_private_key(SECP256R1())
    path.write_bytes(ec.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    with pytest.raises(devicekey.DeviceKeyError, match="not an ed25519 key"):
        devicekey.load(path)
