"""Secrets never reach a device log line or an error (the system role ships logs to Loki).

The secrets are recognisable values; every path is driven so that an error quotes them (a
server echoing the request, a library quoting its input, an exception carrying them), and
the captured output is searched for them.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from fleetcore import logs, redact
from fleetcore.errors import FleetError
from fleetcore.layout import Slot
from fleetcore.release import Hardware
from fleetcore.version import Version
from fleetcore.wire import RegisterRequest
from simulator.server import stop
from tests.updater.device import SimDevice
from tests.updater.servers import FleetServer
from tests.updater.test_cli import cli
from updater.config import load_config
from updater.overlord import Identity, OverlordClient, OverlordRejected
from updater.proxy import Proxy, ProxyRules

ROOT = Path(__file__).resolve().parents[2]
DEVICE_PYTHON = ROOT / ".venv-device" / "bin" / "python"
PROXY_PASSWORD = "pr0xy-Pa55word"
PSK = "wifi-Secret-Psk"
ENROL = "enrol-Secret-Token"
DEVICE_TOKEN = "token-dev-1"  # what the test Overlord issues to the first device
SECRETS = (PROXY_PASSWORD, PSK, ENROL, DEVICE_TOKEN)
# Bounds a wait for the daemon; it only ends a test that would otherwise hang.
WAIT_BOUND_S = 120.0


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked into: {text}"
        assert secret[:8] not in text, f"part of {secret!r} leaked into: {text}"


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    redact.install([caplog.handler])
    return caplog


def test_the_filter_masks_message_arguments_and_tracebacks(captured):
    redact.SECRETS.add(PSK, ENROL, PROXY_PASSWORD, DEVICE_TOKEN)
    log = logging.getLogger("updater.somewhere")
    log.error("connecting with %s through %s", PSK, f"http://u:{PROXY_PASSWORD}@h:3128")
    try:
        raise RuntimeError(f"a library quoted {ENROL} and {DEVICE_TOKEN}")
    except RuntimeError:
        log.exception("failed")
    log.warning("a bad format string %d", ENROL)  # masked, never raised into the caller
    log.info("stack", stack_info=True, extra={"x": PSK})
    assert_clean(captured.text)
    assert captured.text.count(redact.MASK) >= 5


def test_json_lines_carry_no_secret_in_extra_fields_or_tracebacks():
    redact.SECRETS.add(PSK, ENROL)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonLines())
    redact.install([handler])
    log = logging.getLogger("updater.json")
    log.addHandler(handler)
    try:
        try:
            raise RuntimeError(f"a library quoted {ENROL}")
        except RuntimeError:
            log.error("failed", exc_info=True, extra={"wifi": PSK})
    finally:
        log.removeHandler(handler)
    doc = json.loads(stream.getvalue())
    assert doc["wifi"] == redact.MASK
    assert "RuntimeError" in doc["exception"]
    assert_clean(stream.getvalue())


def test_the_secrets_read_are_learnt_where_they_are_read(device: SimDevice):
    device.roots.data_config.parent.mkdir(parents=True, exist_ok=True)
    device.roots.data_config.write_text(
        yaml.safe_dump({"proxy": {"url": f"http://fleet:{PROXY_PASSWORD}@proxy:3128"}})
    )
    device.roots.fleet_yaml.write_text(
        yaml.safe_dump(
            {
                "overlord_url": "https://o.example",
                "enrollment_token": ENROL,
                "hostname": "cam-1",
                "wifi": {"ssid": "net", "psk": PSK},
            }
        )
    )
    config = load_config(device.roots)
    identity = Identity("dev-1", DEVICE_TOKEN)
    text = redact.SECRETS.mask(" ".join(SECRETS))
    assert_clean(text)
    assert_clean(repr(config))
    assert_clean(repr(identity))
    assert_clean(repr(config.proxy_rules()))


@pytest.mark.parametrize(
    "updater_yaml",
    [
        f'proxy: {{url: "http://u:{PROXY_PASSWORD}@h:3128"\n',  # PyYAML quotes the line
        f"proxy:\n  url: http://u:{PROXY_PASSWORD}@h:3128\n  - {PSK}\n",
    ],
)
def test_configuration_errors_quote_no_line(device: SimDevice, updater_yaml: str):
    device.roots.data_config.parent.mkdir(parents=True, exist_ok=True)
    device.roots.data_config.write_text(updater_yaml)
    with pytest.raises(FleetError) as caught:
        load_config(device.roots)
    assert "line" in str(caught.value)
    assert_clean(f"{caught.value} {caught.value.hint}")


def test_a_refusal_quoting_a_secret_is_masked_before_it_is_cut():
    redact.SECRETS.add(ENROL)
    # The secret straddles the 200 characters kept of a refusal: cut first, its head would
    # no longer be recognised as the secret.
    body = ("x" * 190 + ENROL).encode()
    client = OverlordClient(
        "http://overlord.invalid",
        timeout=5,
        proxies=ProxyRules(),
        transport=httpx.MockTransport(
            lambda request: httpx.Response(422, stream=httpx.ByteStream(body))
        ),
    )
    request = RegisterRequest(
        enrollment_token=ENROL,
        hostname="cam-1",
        hardware=Hardware.QEMU,
        image_version=Version("1.0.0"),
        booted_slot=Slot.A,
    )
    with pytest.raises(OverlordRejected) as caught:
        client.register(request)
    assert_clean(str(caught.value))


def test_a_bad_proxy_url_is_named_without_its_password():
    with pytest.raises(FleetError) as caught:
        Proxy.parse(f"http://user:{PROXY_PASSWORD}@proxy:notaport")
    assert_clean(str(caught.value))


def daemon_script() -> str:
    """``fleet-updater run`` with an update step that fails quoting every secret."""
    return (
        "import updater.engine\n"
        "def resume(self):\n"
        # The device token only once the device has it (read it from identity.json).
        f"    token = ' {DEVICE_TOKEN}' if self.roots.identity_file.exists() else ''\n"
        f"    raise RuntimeError('disk said {ENROL} {PSK} {PROXY_PASSWORD}' + token)\n"
        "updater.engine.Engine.resume = resume\n"
        "from updater.cli import main\n"
        "raise SystemExit(main())\n"
    )


@pytest.mark.parametrize("log_format", ["json", "text"])  # json: what the unit sets
def test_a_daemon_whose_errors_quote_every_secret_logs_none(
    device: SimDevice, server: FleetServer, tmp_path: Path, log_format: str
):
    device.roots.fleet_yaml.write_text(
        yaml.safe_dump(
            {
                "overlord_url": server.url,
                "enrollment_token": ENROL,
                "hostname": "cam-07",
                "wifi": {"ssid": "net", "psk": PSK},
            }
        )
    )
    device.roots.data_config.parent.mkdir(parents=True, exist_ok=True)
    device.roots.data_config.write_text(
        yaml.safe_dump(
            {
                "repository_url": server.tuf_url,
                "poll_min_s": 1,
                "poll_max_s": 2,
                "offline_backoff_max_s": 2,
                "request_timeout_s": 5,
                # Read, so masked, though loopback is reached directly.
                "proxy": {
                    "url": f"http://fleet:{PROXY_PASSWORD}@127.0.0.1:9",
                    "no_proxy": ["127.0.0.1"],
                },
            }
        )
    )
    server.enrollment_token, server.echo_refusals = "another", True  # refusals quote ENROL
    python = DEVICE_PYTHON if DEVICE_PYTHON.exists() else Path(sys.executable)
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(python), "-c", daemon_script(), "-v", *cli(device, "run")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={
                "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
                "PYTHONPATH": str(ROOT),
                logs.FORMAT_ENV: log_format,
            },
        )
    try:
        wait_for("a refused enrolment", lambda: len(server.registrations) >= 2, proc)
        server.enrollment_token = ENROL
        wait_for(
            "the failure reported",
            lambda: (
                any(e["kind"] == "agent-error" for e in server.events)
                and len(server.heartbeats) >= 2
            ),
            proc,
        )
    finally:
        stop(proc)
    text = log.read_text()
    assert "422" in text and "disk said" in text  # the errors were logged...
    assert_clean(text)  # ...without a secret
    reported = " ".join(str(e["reason"]) for e in server.events)
    assert "disk said" in reported
    assert_clean(reported)


def wait_for(what: str, done, proc: subprocess.Popen[bytes]) -> None:
    started = time.monotonic()
    while not done():
        assert proc.poll() is None, f"the daemon exited ({proc.returncode}) waiting for {what}"
        assert time.monotonic() - started < WAIT_BOUND_S, f"no {what}"
        time.sleep(0.2)


def test_the_cli_masks_secrets_in_the_errors_it_prints(device: SimDevice, capfd):
    from updater.cli import main

    device.roots.fleet_yaml.write_text(
        yaml.safe_dump(
            {
                "overlord_url": "https://o.example",
                "enrollment_token": ENROL,
                "hostname": "cam-1",
            }
        )
    )
    # An error that quotes a value the operator put next to the token: here, the token.
    device.roots.image_version_file.write_text(f"{ENROL}\n")
    assert main(cli(device, "status")) != 0
    err = capfd.readouterr().err
    assert "error" in err
    assert redact.MASK in err  # the error quoted it...
    assert_clean(err)  # ...masked
