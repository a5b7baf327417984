from pathlib import Path

import pytest

from image import config
from image.errors import InputError
from tests.image.conftest import FIXTURES


def test_good_config_resolves_paths_relative_to_file():
    cfg = config.load(FIXTURES / "build.yaml")
    assert cfg.root_json == FIXTURES / "root.json"
    assert cfg.packages == ("jq",)
    assert cfg.cache_dir == config.DEFAULT_CACHE


def test_encrypt_data_is_off_unless_the_config_says_so():
    assert config.load(FIXTURES / "build.yaml").encrypt_data is False
    assert config.load(FIXTURES / "build-encrypt-data.yaml").encrypt_data is True


def test_relative_config_path_gives_absolute_paths(tmp_path: Path, monkeypatch):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg/root.json").write_text("{}")
    (tmp_path / "cfg/build.yaml").write_text("root_json: root.json\ncache_dir: cache\n")
    monkeypatch.chdir(tmp_path)
    cfg = config.load(Path("cfg/build.yaml"))
    assert cfg.root_json == tmp_path / "cfg/root.json"
    assert cfg.cache_dir == tmp_path / "cfg/cache"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("build-unknown-key.yaml", "kernel: Extra inputs are not permitted"),
        ("build-encrypt-data-word.yaml", "encrypt_data: Input should be a valid boolean"),
        ("build-not-yaml.yaml", "not valid YAML"),
        ("build-no-root.yaml", "does not exist"),
        ("absent.yaml", "cannot read"),
    ],
)
def test_bad_configs(name: str, expected: str):
    with pytest.raises(InputError, match=expected):
        config.load(FIXTURES / name)


def test_bad_config_from_cli(tmp_path: Path, capsys):
    from image.cli import main

    argv = [
        "build",
        "--backend",
        "debootstrap",
        "--config",
        str(FIXTURES / "build-unknown-key.yaml"),
    ]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("fleet-image: error: build config")
    assert not (tmp_path / "out").exists()
