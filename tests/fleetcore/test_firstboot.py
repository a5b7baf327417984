import contextlib
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetcore.errors import FormatError
from fleetcore.firstboot import MAX_BYTES, dump_firstboot, load_firstboot

FIXTURES = Path(__file__).parents[1] / "image" / "fixtures"


def test_known_good_round_trips():
    cfg = load_firstboot((FIXTURES / "fleet.yaml").read_bytes())
    assert cfg.hostname == "cam-entrance-01"
    assert cfg.wifi is not None and cfg.wifi.country == "DE"
    assert load_firstboot(dump_firstboot(cfg)) == cfg


def test_wifi_is_optional():
    cfg = load_firstboot(
        b"overlord_url: http://10.0.0.2:8000\nenrollment_token: abcdefghijklmnop\nhostname: a\n"
    )
    assert cfg.wifi is None
    assert b"wifi" not in dump_firstboot(cfg)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("fleet-bad-hostname.yaml", "hostname"), ("fleet-unknown-key.yaml", "wi-fi")],
)
def test_known_bad(name: str, expected: str):
    with pytest.raises(FormatError, match=expected):
        load_firstboot((FIXTURES / name).read_bytes())


@pytest.mark.parametrize("data", [b"[1, 2", b"- a list\n", b""])
def test_not_a_mapping(data: bytes):
    with pytest.raises(FormatError, match=r"invalid fleet\.yaml"):
        load_firstboot(data)


def test_without_secrets_still_loads():
    cfg = load_firstboot((FIXTURES / "fleet.yaml").read_bytes())
    stripped = load_firstboot(dump_firstboot(cfg.without_secrets()))
    assert stripped.enrollment_token is None
    assert stripped.wifi is not None and stripped.wifi.psk is None
    assert stripped.hostname == cfg.hostname


def test_flasher_output_is_read_by_the_updater(tmp_path):
    from updater.firstboot import load_firstboot as updater_load

    cfg = load_firstboot((FIXTURES / "fleet.yaml").read_bytes())
    path = tmp_path / "fleet.yaml"
    path.write_bytes(dump_firstboot(cfg))
    assert updater_load(path).model_dump() == cfg.model_dump()


@pytest.mark.parametrize(
    ("psk", "ok"),
    [
        ("correct horse", True),
        ("a" * 63, True),
        ("0123456789abcdef" * 4, True),
        ("g" * 64, False),
        ("short", False),
        ("tab\tinside", False),
        ("caf\u00e9-latte", False),
    ],
)
def test_wifi_key_is_what_wpa2_accepts(psk: str, ok: bool):
    data = {"overlord_url": "http://o", "hostname": "a", "wifi": {"ssid": "s", "psk": psk}}
    text = yaml.safe_dump(data).encode()
    if ok:
        loaded = load_firstboot(text)
        assert loaded.wifi is not None and loaded.wifi.psk == psk
    else:
        with pytest.raises(FormatError, match="psk"):
            load_firstboot(text)


SECRET = "psk-s3cret-value"


@pytest.mark.parametrize(
    "text",
    [
        f"overlord_url: https://o\nhostname: a\nwifi: {{ssid: x, psk: {SECRET}\n",  # unclosed
        f"overlord_url: https://o\nhostname: a\nenrollment_token: [{SECRET}\n",
        f"overlord_url: https://o\nhostname: Bad_{SECRET}\n",
        "\t" + SECRET + ": :\n",
    ],
    ids=["unclosed-flow", "unclosed-list", "bad-hostname", "tab"],
)
def test_errors_never_quote_the_file(text):
    with pytest.raises(FormatError) as info:
        load_firstboot(text.encode())
    assert SECRET not in str(info.value)


def test_hostile_sizes_and_nesting_are_one_error():
    with pytest.raises(FormatError, match="larger than"):
        load_firstboot(b"#" * (MAX_BYTES + 1))
    with pytest.raises(FormatError):
        load_firstboot(b"[" * 20_000)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_are_a_config_or_one_format_error(data):
    with contextlib.suppress(FormatError):
        load_firstboot(data)
