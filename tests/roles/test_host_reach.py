"""Roles must not reach the host: state binds through a swapped-in link are refused at start."""

from __future__ import annotations

import pytest

from fleetcore.rolebundle.errors import BundleError
from updater.roles.runtime import check_state_binds

DOC = {"services": {"web": {"volumes": ["${ROLE_STATE}/www/sub:/srv", "./config:/c:ro"]}}}


def test_a_state_bind_through_a_link_is_refused(tmp_path):
    state = tmp_path / "state"
    (state / "www").mkdir(parents=True)
    (tmp_path / "fleet").mkdir()
    (state / "www" / "sub").symlink_to(tmp_path / "fleet")
    with pytest.raises(BundleError, match="passes through a link"):
        check_state_binds(DOC, state)


def test_a_swapped_state_directory_is_refused(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "www").symlink_to("/data/fleet")
    with pytest.raises(BundleError, match=r"passes through a link \(www\)"):
        check_state_binds(DOC, state)


def test_plain_state_directories_pass(tmp_path):
    (tmp_path / "state" / "www" / "sub").mkdir(parents=True)
    check_state_binds(DOC, tmp_path / "state")
