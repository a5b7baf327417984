"""The docker-save archive: its format, and the same packages giving the same bytes."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from image.roleimage import build, recipe
from image.roleimage.apt import PackageRef
from image.roleimage.archive import CREATED, LABEL_PREFIX
from image.roleimage.errors import PackageError, TreeError

RECIPE = recipe.parse(
    {
        "name": "demo",
        "packages": ["tool"],
        "exclude": ["perl-base"],
        "prune": ["usr/share/doc"],
        "keep": ["usr/share/doc/*/copyright"],
        "entrypoint": ["/usr/bin/tool"],
        "cmd": ["--serve"],
        "user": "65534:29",
        "env": {"HOME": "/var/lib/tool"},
        "labels": {"org.opencontainers.image.title": "demo"},
    },
    source="test",
)


@pytest.fixture
def debs(make_deb):
    return [
        make_deb("libc-test", {"lib/aarch64-linux-gnu/libc.so.6": b"\x7fELF" + bytes(5000)}),
        make_deb(
            "tool",
            {
                "usr/bin/tool": b"#!/bin/sh\necho tool\n",
                "usr/share/doc/tool/copyright": b"MIT",
                "usr/share/doc/tool/changelog.gz": b"log",
            },
            version="2:1.5-3",
        ),
    ]


def members(path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {
            m.name: (tar.extractfile(m).read() if m.isfile() else b"")  # type: ignore[union-attr]
            for m in tar.getmembers()
        }


def test_archive_is_what_docker_load_reads(debs, tmp_path):
    result = build.assemble(RECIPE, recipe.Arch.ARM64, debs, tmp_path / "out")
    hexid = result.image_id.removeprefix("sha256:")
    assert result.archive == tmp_path / "out" / f"{hexid}.tar"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{hexid}.tar"]
    files = members(result.archive)
    [manifest] = json.loads(files["manifest.json"])
    config_bytes = files[manifest["Config"]]
    assert hashlib.sha256(config_bytes).hexdigest() == hexid
    config = json.loads(config_bytes)
    [layer_name] = manifest["Layers"]
    layer = files[layer_name]
    assert config["rootfs"] == {
        "type": "layers",
        "diff_ids": [f"sha256:{hashlib.sha256(layer).hexdigest()}"],
    }
    assert manifest["RepoTags"] == [f"metrica-fleet/demo:{hexid[:12]}"]
    assert (config["architecture"], config["variant"], config["os"]) == ("arm64", "v8", "linux")
    assert config["created"] == CREATED
    run = config["config"]
    assert run["Entrypoint"] == ["/usr/bin/tool"] and run["Cmd"] == ["--serve"]
    assert run["User"] == "65534:29" and run["Env"] == ["HOME=/var/lib/tool"]
    labels = run["Labels"]
    assert labels[f"{LABEL_PREFIX}.packages"] == "libc-test=1.0-1 tool=2:1.5-3"
    assert labels[f"{LABEL_PREFIX}.excluded"] == "perl-base"
    assert labels["org.opencontainers.image.title"] == "demo"

    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        infos = tar.getmembers()
    names = [i.name for i in infos]
    assert names == sorted(names)
    assert {"usr/lib/aarch64-linux-gnu/libc.so.6", "usr/share/doc/tool/copyright"} <= set(names)
    assert "usr/share/doc/tool/changelog.gz" not in names
    assert {i.mtime for i in infos} == {0}
    assert {(i.uname, i.gname) for i in infos} == {("", "")}
    lib = next(i for i in infos if i.name == "lib")
    assert lib.issym() and lib.linkname == "usr/lib"


def test_same_packages_give_the_same_bytes(debs, tmp_path):
    first = build.assemble(RECIPE, recipe.Arch.ARM64, debs, tmp_path / "a")
    second = build.assemble(RECIPE, recipe.Arch.ARM64, list(reversed(debs)), tmp_path / "b")
    assert first.image_id == second.image_id
    assert first.archive.read_bytes() == second.archive.read_bytes()


def test_a_changed_package_gives_another_id(debs, make_deb, tmp_path):
    first = build.assemble(RECIPE, recipe.Arch.ARM64, debs, tmp_path / "a")
    newer = make_deb("tool", {"usr/bin/tool": b"#!/bin/sh\necho 1.6\n"}, version="2:1.6-1")
    second = build.assemble(RECIPE, recipe.Arch.ARM64, [debs[0], newer], tmp_path / "b")
    assert first.image_id != second.image_id


def test_architecture_is_part_of_the_id(debs, tmp_path):
    arm = build.assemble(RECIPE, recipe.Arch.ARM64, debs, tmp_path / "a")
    amd = build.assemble(RECIPE, recipe.Arch.AMD64, debs, tmp_path / "b")
    config = json.loads(members(amd.archive)[f"{amd.image_id.removeprefix('sha256:')}.json"])
    assert arm.image_id != amd.image_id and "variant" not in config


def test_a_stale_exclusion_is_an_error():
    closure = [PackageRef("tool", "1", "arm64"), PackageRef("libc6", "2", "arm64")]
    with pytest.raises(PackageError, match="exclude names perl-base, which the closure"):
        build.select(RECIPE, closure)
    kept = build.select(RECIPE, [*closure, PackageRef("perl-base", "5", "arm64")])
    assert [ref.name for ref in kept] == ["tool", "libc6"]


def test_a_failed_build_leaves_nothing(make_deb, tmp_path):
    a = make_deb("a", {"usr/bin/tool": b"one"})
    b = make_deb("b", {"bin/tool": b"two"})
    with pytest.raises(TreeError):
        build.assemble(RECIPE, recipe.Arch.ARM64, [a, b], tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_build_checks_the_program(debs, tmp_path):
    absent = RECIPE.model_copy(update={"entrypoint": ["/usr/bin/absent"]})
    with pytest.raises(TreeError, match="runs /usr/bin/absent"):
        build.assemble(absent, recipe.Arch.ARM64, debs, tmp_path / "out")
