"""Recipe loading: the shipped recipe loads, every known-bad one fails with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from image.roleimage import recipe
from image.roleimage.errors import RecipeError

from .conftest import FIXTURES

REPO = Path(__file__).resolve().parents[3]


def test_the_audio_player_recipe_loads():
    loaded = recipe.load(REPO / "roles/audio-player/image/mpd.yaml")
    assert "mpd" in loaded.packages and "busybox-static" in loaded.packages
    assert "perl-base" in loaded.exclude
    assert loaded.cmd is not None and loaded.cmd[0] == "/usr/bin/mpd"


def test_defaults():
    loaded = recipe.load(FIXTURES / "good/minimal.yaml")
    assert (loaded.suite, loaded.mirror) == ("bookworm", "http://deb.debian.org/debian")
    assert loaded.security_mirror == "http://deb.debian.org/debian-security"
    assert loaded.exclude == () and loaded.workdir == "/" and loaded.user is None


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("unknown-key", "unknown key 'dockerfile'"),
        ("no-packages", "missing key 'packages'"),
        ("excluded-and-requested", "perl-base both requested and excluded"),
        ("prune-escapes", "must be a plain relative path"),
        ("prune-absolute", "must be a plain relative path"),
        ("user-name", "user: String should match pattern"),
        ("runs-nothing", "set entrypoint or cmd"),
        ("package-name", "packages.0: String should match pattern"),
        ("duplicate-exclude", "exclude lists perl more than once"),
        ("component", "unknown archive component 'universe'"),
        ("env-name", "environment variable name 'BAD-NAME' is not valid"),
        ("not-a-mapping", "expected a mapping at the top level"),
        ("not-yaml", "not valid YAML"),
    ],
)
def test_bad_recipes(fixture, message):
    path = FIXTURES / "bad" / f"{fixture}.yaml"
    with pytest.raises(RecipeError) as caught:
        recipe.load(path)
    text = str(caught.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text


def test_missing_recipe(tmp_path):
    with pytest.raises(RecipeError, match="cannot read recipe"):
        recipe.load(tmp_path / "absent.yaml")


def test_every_bad_fixture_is_tested():
    tested = {p.stem for p in (FIXTURES / "bad").glob("*.yaml")}
    source = Path(__file__).read_text()
    assert all(f'"{name}"' in source for name in tested)
