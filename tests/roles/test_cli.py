"""``fleet-updater roles ...`` through a small argparse harness, as the updater's main runs it."""

from __future__ import annotations

import json

import pytest

from .helpers import BAD, GOOD, REPO, make_bundle, run_cli


def test_validate_good(capsys):
    assert run_cli("validate", str(GOOD), str(REPO / "roles" / "system")) == 0
    out = capsys.readouterr().out
    assert "ok (webapp 1.0.0)" in out and "ok (system 1.0.0)" in out


def test_validate_bad_is_one_line(capsys):
    assert run_cli("validate", str(BAD / "privileged-unjustified")) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("fleet-updater: error: compose.yaml: service 'web': privileged")
    assert err[1].startswith("fleet-updater: hint: add {service: web, kind: privileged")
    assert len(err) == 2


def test_pack(tmp_path, capsys):
    assert run_cli("pack", str(GOOD), str(tmp_path / "w.tar.zst")) == 0
    assert (tmp_path / "w.tar.zst").stat().st_size > 0


def test_status_of_an_empty_device(tmp_path, capsys):
    assert run_cli("status", "--json", "--root", str(tmp_path)) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_subcommand_is_required():
    with pytest.raises(SystemExit):
        run_cli()


@pytest.mark.integration
def test_apply_status_and_manual_safe_mode(harness, capsys):
    bundle = make_bundle(harness.tmp / "bundle", image=harness.image)
    common = [
        "--root", str(harness.config.root),
        "--safe-mode-bundle", str(harness.config.safe_mode_bundle),
        "--role-config-dir", str(harness.tmp / "none"),
        "--device-id", "cli-device",
        "--project-prefix", harness.prefix,
        "--compose", harness.flavor.value,
    ]  # fmt: skip
    assert run_cli("apply", str(bundle), *common) == 0
    assert capsys.readouterr().out == "applied\n"
    assert run_cli("status", *common) == 0
    assert capsys.readouterr().out == "webapp\t1.0.0\thealthy\n"

    assert run_cli("safe-mode", "enter", "--reason", "maintenance", *common) == 0
    assert run_cli("status", "--json", *common) == 0
    statuses = {s["name"]: s for s in json.loads(capsys.readouterr().out)}
    assert statuses["safe-mode"]["health"] == "healthy"
    assert statuses["webapp"]["safe_mode"] is True
    assert statuses["webapp"]["health"] == "unhealthy"  # stopped on purpose
    page = harness.config.root / "safe-mode" / "state" / "www" / "index.html"
    assert "maintenance" in page.read_text() and "cli-device" in page.read_text()

    assert run_cli("safe-mode", "leave", *common) == 0
    assert run_cli("status", *common) == 0
    assert capsys.readouterr().out == "webapp\t1.0.0\thealthy\n"
