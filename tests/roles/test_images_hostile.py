"""Hostile ``docker save`` archives: huge headers, duplicate JSON keys, arbitrary mutations."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetcore.rolebundle.errors import ImageArchiveError
from fleetcore.rolebundle.images import check_archive

from .helpers import _tar, image_archive
from .test_archive_hostile import raw_header


def test_a_huge_pax_header_is_refused_before_it_is_read(tmp_path):
    archive = tmp_path / f"{'a' * 64}.tar"
    archive.write_bytes(raw_header(b"p", b"x", 150 * 1024 * 1024) + b"1" * 4096)
    with pytest.raises(ImageArchiveError, match="extended header of 157286400 bytes"):
        check_archive(archive, "a" * 64, label="images/a.tar")


def test_a_manifest_with_a_duplicate_key_is_refused(tmp_path):
    manifest = b'[{"Config": "a.json", "Config": "b.json", "Layers": ["l"]}]'
    archive = tmp_path / "x.tar"
    archive.write_bytes(_tar([("manifest.json", manifest)]))
    with pytest.raises(ImageArchiveError, match="manifest.json is not valid JSON"):
        check_archive(archive, "a" * 64, label="images/x.tar")


def test_the_archive_is_read_without_tarfile_buffering_headers(tmp_path):
    image_hex = image_archive(tmp_path)
    check_archive(tmp_path / f"{image_hex}.tar", image_hex, label="images/ok.tar")


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_archives_fail_with_one_error(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("img")
    image_hex = image_archive(folder, oci=data.draw(st.booleans()))
    path = folder / f"{image_hex}.tar"
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    path.write_bytes(bytes(raw))
    try:
        check_archive(path, image_hex, label="images/m.tar")
    except ImageArchiveError as err:
        assert str(err)
