"""Image archives a bundle carries (``images/<hex>.tar``): validation, staging, packing.

The known-bad archives are checked-in fixtures (``fixtures/bad/image*``, listed in
``expected.yaml``); the good ones are generated here, since their file name must be the
digest of their config blob.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
import zstandard

from fleetcore.rolebundle.bundle import load_bundle
from fleetcore.rolebundle.errors import BundleError, ImageArchiveError
from fleetcore.version import Version
from updater.roles.archive import extract, pack
from updater.roles.manager import ManagerConfig, RoleManager

from .helpers import BAD, image_archive, make_bundle, run_cli

EXPECTED: dict[str, str] = yaml.safe_load((BAD / "expected.yaml").read_text())
IMAGE_CASES = sorted(case for case in EXPECTED if case.startswith(("image-archive-", "images-")))


def carrying_bundle(tmp: Path, **archive_options: Any) -> tuple[Path, str]:
    """The webapp bundle pinning a hand-made image by ID, with its archive in images/."""
    image_hex = image_archive(tmp / "made", **archive_options)
    bundle = make_bundle(tmp / "bundle", image=f"sha256:{image_hex}")
    (bundle / "images").mkdir()
    shutil.move(tmp / "made" / f"{image_hex}.tar", bundle / "images")
    return bundle, image_hex


def zst_of(folder: Path, out: Path) -> Path:
    """``folder`` as a tar.zst without any validation, as a hostile publisher could make it."""
    with (
        out.open("wb") as raw,
        zstandard.ZstdCompressor().stream_writer(raw) as zout,
        tarfile.open(fileobj=zout, mode="w|") as tar,
    ):
        for child in sorted(folder.iterdir()):
            tar.add(child, arcname=child.name)
    return out


@pytest.mark.parametrize("oci", [False, True], ids=["docker-20-layout", "oci-layout"])
def test_a_valid_archive_passes(tmp_path, oci):
    bundle, image_hex = carrying_bundle(tmp_path, oci=oci)
    assert load_bundle(bundle).spec.images == (f"sha256:{image_hex}",)


def test_an_empty_images_folder_passes(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    (bundle / "images").mkdir()
    load_bundle(bundle)


def test_a_fifo_in_images_is_rejected(tmp_path):
    bundle, _ = carrying_bundle(tmp_path)
    os.mkfifo(bundle / "images" / "pipe")
    with pytest.raises(BundleError, match="device node, fifo or socket"):
        load_bundle(bundle)


def test_an_archive_for_a_registry_reference_is_not_listed(tmp_path):
    """Only IDs pinned in the local form can be carried: a registry digest is pulled."""
    bundle, image_hex = carrying_bundle(tmp_path)
    registry = f"example.org/web:1@sha256:{image_hex}"
    for name in ("role.yaml", "compose.yaml"):
        path = bundle / name
        path.write_text(path.read_text().replace(f"sha256:{image_hex}", registry))
    with pytest.raises(ImageArchiveError, match="is not an image ID listed in role.yaml"):
        load_bundle(bundle)


@pytest.mark.parametrize("case", IMAGE_CASES)
def test_staging_on_the_device_applies_the_same_checks(tmp_path, case):
    archive = zst_of(BAD / case, tmp_path / f"{case}.tar.zst")
    manager = RoleManager(ManagerConfig(device_id="d", root=tmp_path / "roles"))
    with pytest.raises(BundleError) as caught:
        manager.stage("webapp", archive, Version("1.0.0"))
    assert EXPECTED[case] in str(caught.value)
    assert not (tmp_path / "roles" / "webapp" / "1.0.0").exists()


def test_pack_adds_the_archives_from_images_dir(tmp_path):
    image_hex = image_archive(tmp_path / "imgdir")
    bundle = make_bundle(tmp_path / "b", image=f"sha256:{image_hex}")
    added = pack(bundle, tmp_path / "a.tar.zst", images_dir=tmp_path / "imgdir")
    assert added == [f"images/{image_hex}.tar"]
    extract(tmp_path / "a.tar.zst", tmp_path / "out")
    assert load_bundle(tmp_path / "out").spec.name == "webapp"
    assert (tmp_path / "out" / "images" / f"{image_hex}.tar").read_bytes() == (
        tmp_path / "imgdir" / f"{image_hex}.tar"
    ).read_bytes()
    # Reproducible, like a bundle without images.
    pack(bundle, tmp_path / "b.tar.zst", images_dir=tmp_path / "imgdir")
    assert (tmp_path / "a.tar.zst").read_bytes() == (tmp_path / "b.tar.zst").read_bytes()


def test_pack_keeps_an_archive_already_in_the_bundle(tmp_path):
    bundle, image_hex = carrying_bundle(tmp_path)
    inside = (bundle / "images" / f"{image_hex}.tar").read_bytes()
    assert image_archive(tmp_path / "imgdir", tag="web:other") == image_hex  # other bytes
    assert pack(bundle, tmp_path / "a.tar.zst", images_dir=tmp_path / "imgdir") == []
    extract(tmp_path / "a.tar.zst", tmp_path / "out")
    assert (tmp_path / "out" / "images" / f"{image_hex}.tar").read_bytes() == inside


def test_pack_checks_the_archives_it_adds(tmp_path):
    image_hex = image_archive(tmp_path / "imgdir")
    bundle = make_bundle(tmp_path / "b", image=f"sha256:{image_hex}")
    other = image_archive(tmp_path / "other", oci=True, diff_ok=False)
    shutil.copy(tmp_path / "other" / f"{other}.tar", tmp_path / "imgdir" / f"{image_hex}.tar")
    with pytest.raises(ImageArchiveError, match="Config blob has sha256"):
        pack(bundle, tmp_path / "a.tar.zst", images_dir=tmp_path / "imgdir")
    assert not (tmp_path / "a.tar.zst").exists()


def test_pack_with_images_still_refuses_a_placeholder_digest(tmp_path):
    bundle = make_bundle(tmp_path / "b", image="sha256:" + "0" * 64)
    (tmp_path / "imgdir").mkdir()
    with pytest.raises(BundleError, match="placeholder digest"):
        pack(bundle, tmp_path / "a.tar.zst", images_dir=tmp_path / "imgdir")


def test_cli_pack_with_images_round_trips(tmp_path, capsys):
    image_hex = image_archive(tmp_path / "imgdir")
    bundle = make_bundle(tmp_path / "b", image=f"sha256:{image_hex}")
    out = tmp_path / "webapp.tar.zst"
    assert run_cli("pack", str(bundle), str(out), "--images", str(tmp_path / "imgdir")) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{out}: carries images/{image_hex}.tar from {tmp_path / 'imgdir'}",
        f"{out}: written",
    ]
    extract(out, tmp_path / "out")
    assert run_cli("validate", str(tmp_path / "out")) == 0


def test_cli_pack_with_a_missing_images_dir_is_one_line(tmp_path, capsys):
    image_hex = image_archive(tmp_path / "made")
    bundle = make_bundle(tmp_path / "b", image=f"sha256:{image_hex}")
    assert run_cli("pack", str(bundle), str(tmp_path / "o"), "--images", str(tmp_path / "no")) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"fleet-updater: error: {tmp_path / 'no'} is not a directory"
    ]
