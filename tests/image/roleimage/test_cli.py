"""``fleet-image role-image build``: one error line for a bad recipe, nothing written."""

from __future__ import annotations

from image.cli import main

from .conftest import FIXTURES


def test_bad_recipe_is_one_line(tmp_path, capsys):
    recipe = FIXTURES / "bad" / "unknown-key.yaml"
    status = main(["role-image", "build", str(recipe), "--arch", "arm64", "--out", str(tmp_path)])
    err = capsys.readouterr().err.splitlines()
    assert status == 1
    assert err == [f"fleet-image: error: {recipe}: unknown key 'dockerfile'"]
    assert list(tmp_path.iterdir()) == []
