"""``fleet-sign add-bootloader --customer-key / --signed-boot-off``: the close and open steps of
a boot-key rollover (ADR 0084) rewrite the image's signed-boot state before it is signed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from fleetcore import bootsig, eepromkey
from fleetcore.release import Hardware
from signing.cli import main
from tests.updater.eeprom_board import eeprom_image

KEYS = Path(__file__).parents[1] / "image" / "fixtures" / "bootkeys"
PI4_2024_04_15 = 1713186734


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FLEET_SIGN_KEYS", str(tmp_path / "keys"))
    assert main(["init", str(tmp_path / "repo")]) == 0
    (tmp_path / "pieeprom.bin").write_bytes(eeprom_image(Hardware.PI4, PI4_2024_04_15))
    (tmp_path / "recovery.bin").write_bytes(b"recovery.bin of the same release")
    return tmp_path / "repo"


def add(repo: Path, *extra: str) -> int:
    base = repo.parent
    image, recovery = str(base / "pieeprom.bin"), str(base / "recovery.bin")
    return main(["add-bootloader", str(repo), image, recovery, "--hardware", "pi4", *extra])


def published_image(repo: Path) -> bytes:
    (found,) = (
        p for p in repo.rglob("*") if p.is_file() and p.suffix == ".bin" and "pieeprom" in p.name
    )
    return found.read_bytes()


def snapshot(repo: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()}


def test_close_step_embeds_the_key_with_signed_boot_on(repo: Path) -> None:
    key = bootsig.load_public_key((KEYS / "customer.pub.pem").read_bytes())
    assert add(repo, "--customer-key", str(KEYS / "customer.pub.pem")) == 0
    state = eepromkey.read(published_image(repo))
    assert state.signed_boot and state.key is not None
    assert bootsig.fingerprint(state.key) == bootsig.fingerprint(key)


def test_open_step_turns_signed_boot_off(repo: Path) -> None:
    assert add(repo, "--signed-boot-off") == 0
    assert eepromkey.read(published_image(repo)) == eepromkey.KeyState(False, None)


def test_without_a_step_the_image_is_published_as_built(repo: Path) -> None:
    assert add(repo) == 0
    assert published_image(repo) == eeprom_image(Hardware.PI4, PI4_2024_04_15)


def public_pem(private: str) -> bytes:
    key = serialization.load_pem_private_key((KEYS / private).read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    ("pem", "error"),
    [
        (
            lambda: public_pem("rsa4096.pem"),
            "the bootloader checks RSA-2048 keys only, not RSA-4096",
        ),
        (
            lambda: public_pem("ed25519.pem"),
            "the bootloader checks RSA-2048 keys only, not Ed25519PublicKey",
        ),
        (lambda: (KEYS / "customer.pem").read_bytes(), "not a PEM public key"),
        (lambda: (KEYS / "garbage.pem").read_bytes(), "not a PEM public key"),
    ],
)
def test_a_bad_key_is_one_line_and_nothing_is_written(
    repo: Path, pem: Callable[[], bytes], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = repo.parent / "key.pem"
    path.write_bytes(pem())
    before = snapshot(repo)
    capsys.readouterr()
    assert add(repo, "--customer-key", str(path)) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"fleet-sign: error: the customer key {path}: {error}"
    ]
    assert snapshot(repo) == before


def test_a_missing_key_file_is_one_line(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert add(repo, "--customer-key", str(repo.parent / "nope.pem")) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"fleet-sign: error: cannot read the customer key {repo.parent / 'nope.pem'}: "
        "No such file or directory"
    ]


def test_the_two_steps_exclude_each_other(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        add(repo, "--signed-boot-off", "--customer-key", str(KEYS / "customer.pub.pem"))
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
