"""Where fleetctl finds URL and token, and how it fails: one line, a hint, exit 1 or 2."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from fleetcore.net import free_port
from overlord.auth.models import KeyRole
from tests.fleetctl.conftest import Fleet, one_line_error


def _config(fleet: Fleet):
    return fleet.home / "config" / "metrica-fleet" / "fleetctl.yaml"


def test_login_saves_a_0600_file_that_later_commands_use(fleet: Fleet):
    login = fleet.run("login", "--url", fleet.url, "--token", fleet.admin, auth=False)
    assert login.returncode == 0, login.stderr
    path = _config(fleet)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert fleet.admin not in login.stdout + login.stderr
    assert [p.name for p in path.parent.iterdir()] == ["fleetctl.yaml"], "no temp file left"

    listed = fleet.run("groups", "list", "--json", auth=False)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip() == "[]"


def test_flags_beat_the_environment_which_beats_the_file(fleet: Fleet):
    fleet.ok("login", "--url", fleet.url, "--token", fleet.admin)
    down = f"http://127.0.0.1:{free_port()}"
    from_env = fleet.run("groups", "list", auth=False, FLEET_URL=down)
    assert "cannot connect to " + down in one_line_error(from_env)
    from_flag = fleet.run("--url", fleet.url, "groups", "list", auth=False, FLEET_URL=down)
    assert from_flag.returncode == 0, from_flag.stderr
    viewer = fleet.token(KeyRole.VIEWER)
    as_viewer = fleet.run("tokens", "list", auth=False, FLEET_TOKEN=viewer)
    assert "needs the admin role" in one_line_error(as_viewer)


def test_login_refuses_a_token_the_server_refuses_and_saves_nothing(fleet: Fleet):
    result = fleet.run("login", "--url", fleet.url, "--token", "not-a-real-token", auth=False)
    assert "the token was refused" in one_line_error(result)
    assert "not-a-real-token" not in result.stderr
    assert not _config(fleet).exists()


def test_a_config_file_others_can_read_is_refused_with_the_chmod_hint(fleet: Fleet):
    fleet.ok("login", "--url", fleet.url, "--token", fleet.admin)
    path = _config(fleet)
    for mode in (0o640, 0o604, 0o620):
        path.chmod(mode)
        result = fleet.run("devices", "list", auth=False)
        err = one_line_error(result)
        assert f"mode {mode:04o}" in err
        assert f"fleetctl: hint: chmod 600 {path}" in err
        assert fleet.admin not in result.stdout + result.stderr


def test_a_config_file_with_unknown_keys_or_bad_yaml_is_refused(fleet: Fleet):
    path = _config(fleet)
    path.parent.mkdir(parents=True)
    for text in (f"url: {fleet.url}\ntoken: t\nextra: 1\n", "url: [unclosed\n", "- a list\n"):
        path.write_text(text)
        path.chmod(0o600)
        one_line_error(fleet.run("devices", "list", auth=False))


def test_the_config_home_is_respected(fleet: Fleet):
    other = fleet.home / "elsewhere"
    result = fleet.run(
        "login", "--url", fleet.url, "--token", fleet.admin, auth=False, XDG_CONFIG_HOME=str(other)
    )
    assert result.returncode == 0, result.stderr
    assert (other / "metrica-fleet" / "fleetctl.yaml").is_file()
    assert not _config(fleet).exists()


def test_no_credentials_and_malformed_arguments_are_usage_errors(fleet: Fleet):
    missing = fleet.run("devices", "list", auth=False)
    assert "no Overlord URL given" in one_line_error(missing, code=2)
    not_http = fleet.run("--url", "ftp://x", "--token", "t", "devices", "list", auth=False)
    assert "not an http(s) URL" in one_line_error(not_http, code=2)
    bad_label = fleet.run("devices", "label", "d1", "novalue")
    assert "KEY=VALUE" in one_line_error(bad_label, code=2)
    unknown = fleet.run("devices", "frobnicate")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr


def test_a_server_that_is_down_is_one_line(fleet: Fleet):
    down = f"http://127.0.0.1:{free_port()}"
    result = fleet.run("--url", down, "--token", fleet.admin, "devices", "list", auth=False)
    err = one_line_error(result)
    assert f"cannot connect to {down}" in err and "is the Overlord running" in err
    assert fleet.admin not in err


def test_a_wrong_url_is_named_as_one(fleet: Fleet):
    for wrong in (f"{fleet.url}/dashboard", f"{fleet.url}/static"):
        result = fleet.run("--url", wrong, "--token", fleet.admin, "devices", "list", auth=False)
        assert "check --url" in one_line_error(result)
    https = fleet.url.replace("http://", "https://")
    result = fleet.run("--url", https, "--token", fleet.admin, "devices", "list", auth=False)
    assert "check --url" in one_line_error(result)


def test_an_expired_or_revoked_token_is_refused_with_a_hint(fleet: Fleet):
    expired = fleet.expired_token()
    result = fleet.run("devices", "list", token=expired)
    err = one_line_error(result)
    assert "the token was refused" in err
    assert "unknown, expired or revoked" in err and "fleetctl login" in err
    assert expired not in result.stdout + result.stderr


def test_refusals_carry_the_servers_reason(fleet: Fleet):
    device = fleet.enroll("ERR001")
    viewer = fleet.token(KeyRole.VIEWER)
    forbidden = fleet.run("devices", "set-status", device, "quarantined", token=viewer)
    assert "this needs the admin role or higher" in one_line_error(forbidden)
    missing = fleet.run("devices", "show", "no-such-device")
    assert "no-such-device" in one_line_error(missing)
    fleet.ok("groups", "create", "busy")
    fleet.ok("devices", "move-group", device, "busy")
    in_use = fleet.run("groups", "delete", "busy")
    assert "still has devices" in one_line_error(in_use)
    field = fleet.run(
        "rollouts", "create", "r", "--kind", "os", "--version", "1.1.0", "--canary", "0"
    )
    err = one_line_error(field)
    assert "invalid request: canary_devices:" in err and "greater than or equal to 1" in err
    bad_name = fleet.run("groups", "create", "bad name!")
    assert "name" in one_line_error(bad_name)


def test_the_module_and_the_help_run_without_a_server():
    env = {**os.environ, "PYTHONPATH": str(__import__("pathlib").Path(__file__).parents[2])}
    for args in ([], ["--help"], ["rollouts", "wait", "--help"]):
        result = subprocess.run(
            [sys.executable, "-m", "fleetctl", *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == (2 if not args else 0), result.stderr
        assert "Traceback" not in result.stderr
