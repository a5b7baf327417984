"""Release metadata from a hostile repository or mirror, as the device parses it.

Every metadata file goes through ``fleetcore.strictjson`` before python-tuf (whose
``json.loads`` keeps the last of two equal keys and takes NaN, lone surrogates and any
nesting); every target's ``custom.metrica`` through :meth:`TargetCustom.from_custom`. Whatever
the bytes, the device trusts the honest metadata or raises one error of the trust chain.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import FetcherInterface

from fleetcore import strictjson
from fleetcore.errors import FormatError
from signing.client import ReleaseClient
from signing.errors import DownloadError, MetadataError, VerificationError
from signing.targets import CUSTOM_KEY, TargetCustom
from tests.signing.conftest import REPOS

GOOD = REPOS / "good"
BASE = "mem://repo"
FILES = {str(p.relative_to(GOOD)): p.read_bytes() for p in sorted(GOOD.rglob("*")) if p.is_file()}
ROOT = FILES["metadata/1.root.json"]
TIMESTAMP = FILES["metadata/timestamp.json"]
TARGETS = FILES["metadata/3.targets.json"]
NAMES = sorted(json.loads(TARGETS)["signed"]["targets"])


class MemoryFetcher(FetcherInterface):
    """The good fixture repository from memory, with some files replaced."""

    def __init__(self, replaced: dict[str, bytes]) -> None:
        self.files = {**FILES, **replaced}

    def _fetch(self, url: str) -> Iterator[bytes]:
        path = url.removeprefix(f"{BASE}/")
        if path not in self.files:
            raise DownloadHTTPError(f"{path} not found", 404)
        return iter([self.files[path]])


def client_for(metadata_dir: Path, **replaced: bytes) -> ReleaseClient:
    return ReleaseClient(
        metadata_dir=metadata_dir,
        base_url=BASE,
        bootstrap_root=ROOT,
        fetcher=MemoryFetcher({f"metadata/{k}": v for k, v in replaced.items()}),
    )


def around(document: bytes, before: bytes) -> bytes:
    """``document`` with ``before`` as its first top-level member (outside ``signed``, so
    python-tuf's signature check never looks at it)."""
    return b"{" + before + b", " + document.lstrip()[1:]


@pytest.mark.parametrize(
    ("timestamp", "message"),
    [
        (around(TIMESTAMP, b'"signed": {"_type": "timestamp"}'), "duplicate key 'signed'"),
        (around(TIMESTAMP, b'"x": NaN'), "NaN is not a JSON number"),
        (around(TIMESTAMP, b'"x": -Infinity'), "-Infinity is not a JSON number"),
        (around(TIMESTAMP, b'"x": "\\ud800"'), "lone UTF-16 surrogate"),
        (around(TIMESTAMP, b'"x": ' + b"[" * 100 + b"]" * 100), "nests deeper than 64"),
        (b"\xff" + TIMESTAMP, "not valid JSON"),
    ],
    ids=["duplicate", "nan", "infinity", "surrogate", "deep", "not-utf8"],
)
def test_timestamp_that_is_not_strict_json_is_refused(tmp_path, timestamp, message):
    """All but the last were trusted before: the defect is outside the signed part, or a
    duplicate whose last value is the signed one."""
    client = client_for(tmp_path, **{"timestamp.json": timestamp})
    with pytest.raises(MetadataError, match=f"not strict JSON: timestamp.json.*{message}"):
        client.refresh()
    assert not (tmp_path / "timestamp.json").exists()


def test_targets_with_nan_outside_the_signed_part_is_refused(tmp_path):
    client = client_for(tmp_path, **{"3.targets.json": around(TARGETS, b'"x": NaN')})
    with pytest.raises(MetadataError, match="not strict JSON: 3.targets.json: NaN"):
        client.refresh()
    assert not (tmp_path / "targets.json").exists()


def test_an_oversized_timestamp_is_cut_off_before_it_is_parsed(tmp_path):
    padded = around(TIMESTAMP, b'"x": "' + b" " * (20 << 10) + b'"')  # python-tuf: 16 KiB
    with pytest.raises(DownloadError, match="exceeding the maximum allowed length"):
        client_for(tmp_path, **{"timestamp.json": padded}).refresh()


def test_a_bootstrap_root_that_is_not_strict_json_is_refused(tmp_path):
    with pytest.raises(MetadataError, match="trusted root is invalid.*duplicate key 'signed'"):
        ReleaseClient(
            metadata_dir=tmp_path,
            base_url=BASE,
            bootstrap_root=around(ROOT, b'"signed": {}'),
            fetcher=MemoryFetcher({}),
        )


def test_the_honest_repository_still_verifies(tmp_path):
    client = client_for(tmp_path)
    client.refresh()
    assert {client.get_target(name).name for name in NAMES} == set(NAMES)


# -- properties -----------------------------------------------------------------------------

_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|-?[0-9][0-9.eE+-]*|true|false|null|\s+|.')
# Spellings a hostile mirror might put in place of, or next to, a token of real metadata.
_SWAPS = [
    b'"signed"',
    b'"signed":{},',
    b'"version":1,',
    b'"meta":{},',
    b'"targets":{},',
    b'"_type":"timestamp",',
    b'"x":NaN,',
    b'"x":Infinity,',
    b'"x":"\\ud800",',
    b'"\\u0073igned"',
    b"NaN",
    b"1e400",
    b"-0",
    b"3.0",
    b'"3"',
    b"[]",
    b"{}",
    b"[" * 70,
    b"]" * 70,
    b",",
    b":",
    b" ",
    b"\\u0000",
    b"\xff",
]


def _edited(tokens: list[bytes], edits: list[tuple[int, bytes, bool]]) -> bytes:
    out = list(tokens)
    for at, swap, insert in edits:
        at %= len(out) + 1 if insert else len(out)
        if insert:
            out.insert(at, swap)
        else:
            out[at] = swap
    return b"".join(out)


_EDITS = st.lists(
    st.tuples(
        st.integers(0, 1 << 16), st.sampled_from(_SWAPS) | st.binary(max_size=6), st.booleans()
    ),
    min_size=1,
    max_size=4,
)


def _served_as(name: str, honest: bytes, data: bytes) -> None:
    """Serve ``data`` as metadata file ``name``: the device trusts metadata equal to the honest
    one (strict JSON, same ``signed``), or raises one error of the trust chain."""
    with tempfile.TemporaryDirectory() as tmp:
        client = client_for(Path(tmp), **{name: data})
        try:
            client.refresh()
            targets = [client.get_target(n) for n in NAMES]
        except (MetadataError, DownloadError):
            return
        except VerificationError:  # a target's custom metadata
            return
    try:
        document = strictjson.loads(data, what=name)
    except FormatError as err:
        pytest.fail(f"trusted {name} that is not strict JSON ({err}): {data!r}")
    assert document["signed"] == json.loads(honest)["signed"], data
    assert all(t.custom is not None for t in targets)


_TIMESTAMP_TOKENS = _JSON_TOKEN.findall(TIMESTAMP)
_TARGETS_TOKENS = _JSON_TOKEN.findall(TARGETS)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400) | _EDITS.map(lambda e: _edited(_TIMESTAMP_TOKENS, e)))
def test_any_timestamp_bytes_are_the_signed_timestamp_or_one_error(data):
    _served_as("timestamp.json", TIMESTAMP, data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400) | _EDITS.map(lambda e: _edited(_TARGETS_TOKENS, e)))
def test_any_targets_bytes_are_the_signed_targets_or_one_error(data):
    _served_as("3.targets.json", TARGETS, data)


_HONEST_CUSTOM = json.loads(TARGETS)["signed"]["targets"][NAMES[0]]["custom"][CUSTOM_KEY]
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_FIELD_VALUES = _JSON | st.sampled_from(
    [
        "1.0.0",
        "1.0.0\n",
        " 1.0.0",
        "01.0",
        "1.0.0.0.0",
        "9" * 10,
        "os",
        "role",
        "OS",
        ["pi4"],
        ["pi4", "pi4"],
        [],
        ["pi9"],
        "a" * 64,
        "A" * 64,
        "a" * 63 + "\n",
        -1,
        2**64,
        1.5,
        True,
    ]
)


_FIELDS = [*sorted(_HONEST_CUSTOM), "version_floor", "extra"]


@settings(max_examples=600, deadline=None)
@given(
    st.one_of(
        _JSON,
        st.dictionaries(st.text(max_size=8), _JSON).map(lambda d: {CUSTOM_KEY: d}),
        # The honest fields with one or two of them replaced, or some of them left out.
        st.dictionaries(st.sampled_from(_FIELDS), _FIELD_VALUES, min_size=1, max_size=2).map(
            lambda d: {CUSTOM_KEY: {**_HONEST_CUSTOM, **d}}
        ),
        st.lists(st.sampled_from(sorted(_HONEST_CUSTOM))).map(
            lambda drop: {CUSTOM_KEY: {k: v for k, v in _HONEST_CUSTOM.items() if k not in drop}}
        ),
    )
)
@example({CUSTOM_KEY: {**_HONEST_CUSTOM, "version": "1.0.0\n"}})
def test_custom_metadata_is_a_model_or_one_verification_error(custom):
    try:
        parsed = TargetCustom.from_custom(custom, target="os/1.0.0/manifest.json")
    except VerificationError as err:
        assert str(err).startswith("target os/1.0.0/manifest.json: invalid custom metadata")
        return
    if parsed is None:
        assert not isinstance(custom, dict) or CUSTOM_KEY not in custom
        return
    assert TargetCustom.from_custom(parsed.to_custom(), target="x") == parsed
    # Versions name target paths (os/<version>/...): plain dotted numbers, nothing after them.
    for version in (parsed.version, parsed.version_floor):
        assert version is None or re.fullmatch(r"[0-9]+(\.[0-9]+){0,3}", str(version))


@pytest.mark.parametrize(
    ("name", "honest", "marker"),
    [
        ("timestamp.json", TIMESTAMP, b'"meta": {'),  # found by the fuzz above in CI
    ],
)
def test_a_field_python_tuf_drops_is_covered_by_no_signature_and_refused(name, honest, marker):
    """python-tuf checks a signature over its own model's serialisation and drops fields of
    ``meta`` it does not know: bytes with such a field verify, yet no signature covers them."""
    assert marker in honest
    data = honest.replace(marker, marker + b'"signed": {}, ', 1)
    with tempfile.TemporaryDirectory() as tmp:
        client = client_for(Path(tmp), **{name: data})
        with pytest.raises(MetadataError, match="carries fields no signature covers"):
            client.refresh()
