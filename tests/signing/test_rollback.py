import pytest

from fleetcore.version import Version
from signing.errors import DowngradeRefused
from signing.rollback import check_upgrade, raise_floor

V = Version


def test_upgrade_and_reinstall_allowed():
    check_upgrade(V("1.1.0"), installed=V("1.0.0"), floor=None)
    check_upgrade(V("1.0.0"), installed=V("1.0.0"), floor=V("1.0.0"))


def test_downgrade_refused():
    with pytest.raises(DowngradeRefused, match="lower than the installed 1.2.0"):
        check_upgrade(V("1.1.9"), installed=V("1.2.0"), floor=None)


def test_floor_refused():
    with pytest.raises(DowngradeRefused, match="below this device's version floor 2.0"):
        check_upgrade(V("1.5.0"), installed=V("1.0.0"), floor=V("2.0"))


def test_floor_only_rises():
    assert raise_floor(None, None) is None
    assert raise_floor(None, V("1.0")) == V("1.0")
    assert raise_floor(V("2.0"), V("1.0")) == V("2.0")
    assert raise_floor(V("2.0"), V("3.0")) == V("3.0")
