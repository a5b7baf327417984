"""Which forwarded headers the Overlord believes when it picks a client's address."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
import uvicorn

from overlord import cli
from overlord.errors import ConfigError


def test_only_loopback_is_trusted_by_default():
    assert cli.trusted_proxies({}) == "127.0.0.1,::1"
    assert cli.trusted_proxies({"FORWARDED_ALLOW_IPS": "172.31.250.10"}) == "172.31.250.10"


@pytest.mark.parametrize("value", ["*", "172.31.250.10, *"])
def test_trusting_every_address_is_refused(value: str):
    with pytest.raises(ConfigError) as err:
        cli.trusted_proxies({"FORWARDED_ALLOW_IPS": value})
    assert err.value.hint


def test_serve_hands_the_trusted_proxies_to_uvicorn(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.update(kwargs))
    monkeypatch.setenv("OVERLORD_DATABASE_URL", f"sqlite:///{tmp_path / 'o.db'}")
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "172.31.250.10")
    args = argparse.Namespace(host="127.0.0.1", port=8000, workers=1, verbose=False)
    cli.cmd_serve(args)
    assert seen["forwarded_allow_ips"] == "172.31.250.10"
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")
    with pytest.raises(ConfigError):
        cli.cmd_serve(args)
