"""The atomic current/previous swap under fault injection, without Docker."""

from __future__ import annotations

import pytest

from fleetcore.version import Version
from updater.roles.layout import RoleLayout, begin_staging, point, prune, publish_staging, swap

STEPS = ["previous-temp", "previous-linked", "current-temp", "current-linked"]


class PowerCut(Exception):
    pass


def cut_at(step: str):
    def checkpoint(name: str) -> None:
        if name == step:
            raise PowerCut(name)

    return checkpoint


def stage(layout: RoleLayout, version: str) -> None:
    staging = begin_staging(layout, Version(version))
    (staging / "role.yaml").write_text(f"version: {version}\n")
    publish_staging(layout, staging, Version(version))


@pytest.fixture
def layout(tmp_path):
    layout = RoleLayout(tmp_path, "webapp")
    stage(layout, "1.0.0")
    swap(layout, Version("1.0.0"))
    stage(layout, "2.0.0")
    return layout


@pytest.mark.parametrize("step", STEPS)
def test_power_cut_at_every_step_leaves_a_complete_current(layout, step):
    with pytest.raises(PowerCut):
        swap(layout, Version("2.0.0"), cut_at(step))
    current = layout.current_version()
    assert current in (Version("1.0.0"), Version("2.0.0"))
    assert (layout.current / "role.yaml").read_text() == f"version: {current}\n"
    expected = Version("2.0.0") if step == "current-linked" else Version("1.0.0")
    assert current == expected
    # The next attempt finishes the swap despite the leftover temporary link.
    swap(layout, Version("2.0.0"))
    assert layout.current_version() == Version("2.0.0")
    assert layout.previous_version() == Version("1.0.0")
    assert not list(layout.dir.glob(".*.tmp"))


def test_interrupted_staging_is_discarded(layout):
    staging = begin_staging(layout, Version("3.0.0"))
    (staging / "half-written").write_text("x")
    assert not layout.has_version(Version("3.0.0"))
    staging = begin_staging(layout, Version("3.0.0"))
    assert list(staging.iterdir()) == []


def test_prune_keeps_current_and_previous(layout):
    stage(layout, "3.0.0")
    swap(layout, Version("2.0.0"))
    begin_staging(layout, Version("4.0.0"))
    assert prune(layout) == [Version("3.0.0")]
    names = sorted(p.name for p in layout.dir.iterdir())
    assert names == ["1.0.0", "2.0.0", "current", "previous"]


def test_point_replaces_a_link_atomically(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    link = tmp_path / "current"
    point(link, "a")
    point(link, "b")
    assert link.readlink().name == "b"
