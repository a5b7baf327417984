import pytest

from signing.errors import KeyStoreError
from signing.keys import PASSPHRASE_ENV, KeyStore


def test_generate_layout_and_modes(tmp_path):
    keys = KeyStore.generate(tmp_path / "keys", root_keys=3)
    offline = sorted(p.name for p in (tmp_path / "keys" / "offline").iterdir())
    online = sorted(p.name for p in (tmp_path / "keys" / "online").iterdir())
    assert offline == ["root-1.key", "root-2.key", "root-3.key", "targets.key"]
    assert online == ["snapshot.key", "timestamp.key"]
    for path in (tmp_path / "keys").rglob("*.key"):
        assert path.stat().st_mode & 0o777 == 0o600
    assert len(keys.get("root")) == 3
    assert all(s.public_key.scheme == "ed25519" for s in keys.get("root"))


def test_refuses_to_overwrite(tmp_path):
    KeyStore.generate(tmp_path / "keys")
    with pytest.raises(KeyStoreError, match="already holds keys"):
        KeyStore.generate(tmp_path / "keys")


def test_online_only_directory_has_no_offline_keys(tmp_path):
    KeyStore.generate(tmp_path / "keys")
    online = tmp_path / "overlord-keys"
    online.mkdir()
    (tmp_path / "keys" / "online").rename(online / "online")
    keys = KeyStore.open(online)
    assert keys.get("timestamp")
    with pytest.raises(KeyStoreError, match="no targets key") as info:
        keys.get("targets")
    assert "offline" in (info.value.hint or "")


def test_passphrase_protects_offline_keys(tmp_path, monkeypatch):
    KeyStore.generate(tmp_path / "keys", passphrase=b"correct horse")
    assert b"ENCRYPTED" in (tmp_path / "keys" / "offline" / "targets.key").read_bytes()
    assert b"ENCRYPTED" not in (tmp_path / "keys" / "online" / "timestamp.key").read_bytes()
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    with pytest.raises(KeyStoreError, match="is encrypted"):
        KeyStore.open(tmp_path / "keys")
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong")
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        KeyStore.open(tmp_path / "keys")
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse")
    assert KeyStore.open(tmp_path / "keys").get("targets")


def test_refuses_world_readable_key(tmp_path):
    KeyStore.generate(tmp_path / "keys")
    (tmp_path / "keys" / "offline" / "targets.key").chmod(0o644)
    with pytest.raises(KeyStoreError, match="readable by others"):
        KeyStore.open(tmp_path / "keys")
