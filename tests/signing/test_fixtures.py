"""The checked-in fixtures are exactly what make_fixtures.py produces."""

from tests.signing.conftest import REPOS
from tests.signing.fixtures.make_fixtures import build


def _tree(root):
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_fixtures_regenerate_bit_identically(tmp_path):
    build(tmp_path / "repos")
    assert _tree(tmp_path / "repos") == _tree(REPOS)
