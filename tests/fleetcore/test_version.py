import pytest
from pydantic import BaseModel

from fleetcore.errors import VersionError
from fleetcore.version import Version


@pytest.mark.parametrize(
    ("low", "high"),
    [("1.0.0", "1.0.1"), ("1.9", "1.10"), ("1", "1.0.1"), ("2026.11.1", "2026.12.0")],
)
def test_order(low, high):
    assert Version(low) < Version(high)
    assert Version(high) > Version(low)


def test_trailing_zeros_are_equal():
    assert Version("1.2") == Version("1.2.0")
    assert hash(Version("1.2")) == hash(Version("1.2.0.0"))


@pytest.mark.parametrize(
    "bad", ["", "v1.0", "1.0-rc1", "01.2", "1..2", "1.2.3.4.5", "-1", " 1", "1.0.0\n"]
)
def test_rejects_ambiguous(bad):
    with pytest.raises(VersionError, match="invalid version"):
        Version(bad)


def test_pydantic_round_trip():
    class Model(BaseModel):
        version: Version

    model = Model.model_validate({"version": "1.4.0"})
    assert model.version == Version("1.4")
    assert model.model_dump(mode="json") == {"version": "1.4.0"}
    with pytest.raises(ValueError, match="invalid version"):
        Model.model_validate({"version": "latest"})


def test_an_invalid_version_is_quoted_short():
    with pytest.raises(VersionError) as info:
        Version("9" * 1_000_000 + "x")
    assert len(str(info.value)) < 200
