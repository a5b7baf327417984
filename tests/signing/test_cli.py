import json

import pytest
import zstandard

from signing.cli import main


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEET_SIGN_KEYS", str(tmp_path / "keys"))
    assert main(["init", str(tmp_path / "repo"), "--root-keys", "3", "--root-threshold", "2"]) == 0
    return tmp_path / "repo"


def error_lines(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line]


def test_full_cycle_and_verify(tmp_path, repo, serve, capsys):
    bundle = tmp_path / "camera.tar.zst"
    bundle.write_bytes(zstandard.ZstdCompressor().compress(b"tar bytes" * 100))
    args = ["add", str(repo), str(bundle), "--name", "roles/camera/1.2.0.tar.zst"]
    assert main([*args, "--kind", "role", "--version", "1.2.0", "--hardware", "pi5"]) == 0
    assert main(["timestamp", str(repo)]) == 0
    assert main(["rotate", str(repo), "--role", "targets"]) == 0
    capsys.readouterr()
    out = tmp_path / "verified.tar.zst"
    root = repo / "metadata" / "1.root.json"
    url = serve(repo)
    assert (
        main(
            [
                "verify",
                "--root",
                str(root),
                "--url",
                url,
                "roles/camera/1.2.0.tar.zst",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["custom"] == {
        "kind": "role",
        "version": "1.2.0",
        "hardware": ["pi5"],
        "uncompressed_size": 900,
        "uncompressed_sha256": report["custom"]["uncompressed_sha256"],
        "version_floor": None,
        "min_updater_version": None,
    }
    assert out.read_bytes() == bundle.read_bytes()


def test_init_twice_is_one_clear_line(repo, capsys):
    capsys.readouterr()
    assert main(["init", str(repo)]) == 1
    assert error_lines(capsys) == [f"fleet-sign: error: {repo} already holds a TUF repository"]


def test_missing_file(tmp_path, repo, capsys):
    capsys.readouterr()
    code = main(
        [
            "add",
            str(repo),
            str(tmp_path / "nope.tar.zst"),
            "--name",
            "roles/a/1.tar.zst",
            "--kind",
            "role",
            "--version",
            "1",
        ]
    )
    assert code == 1
    assert error_lines(capsys) == [
        f"fleet-sign: error: cannot read {tmp_path / 'nope.tar.zst'}: No such file or directory"
    ]


def test_bad_version_is_a_usage_error(tmp_path, repo, capsys):
    with pytest.raises(SystemExit) as info:
        main(["add", str(repo), "f", "--name", "n", "--kind", "role", "--version", "v1"])
    assert info.value.code == 2
    assert "invalid version 'v1'" in capsys.readouterr().err


def test_no_keys_gives_hint(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FLEET_SIGN_KEYS", raising=False)
    assert main(["timestamp", str(tmp_path)]) == 1
    assert error_lines(capsys) == [
        "fleet-sign: error: no key directory given",
        "fleet-sign: hint: pass --keys DIR or set FLEET_SIGN_KEYS",
    ]


def test_verify_unknown_target(tmp_path, repo, serve, capsys):
    capsys.readouterr()
    url = serve(repo)
    code = main(
        [
            "verify",
            "--root",
            str(repo / "metadata" / "root.json"),
            "--url",
            url,
            "os/9/manifest.json",
        ]
    )
    assert code == 1
    assert error_lines(capsys) == [
        "fleet-sign: error: no signed target named 'os/9/manifest.json' in the release repository"
    ]


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("init", "add", "add-release", "timestamp", "rotate", "verify"):
        assert command in out
