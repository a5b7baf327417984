"""``assemble --verity``: the system image carries its hash tree, each cmdline.txt its root."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fleetcore import verity
from fleetcore.release import ImageName
from fleetcore.verity import BLOCK, VerityParams
from image import assemble, release
from image import verity as image_verity
from image.cli import main
from image.errors import InputError, LayoutError
from image.filesystems import SystemSpec
from image.inspect import describe
from image.layout import MIB
from tests.image.conftest import Built, make_rootfs, request
from tests.image.test_assemble import _fails_cleanly, _fat_file, _part, _read
from tests.image.test_secureboot import KEYS


@pytest.fixture(scope="module")
def verified(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("verity") / "out"
    assemble.assemble(request(rootfs, out, verity=True))
    return Built(rootfs, out)


def _params(built: Built, slot: str) -> VerityParams:
    text = _fat_file(built.disk, _part(built, f"boot_{slot}")[0], "cmdline.txt")
    params = verity.from_cmdline(text)
    assert params is not None
    return params


def _system_image(built: Built, size: int, out: Path) -> Path:
    """The first ``size`` bytes of slot a's system partition."""
    start, _ = _part(built, "system_a")
    out.write_bytes(_read(built.disk, start, size))
    return out


def test_both_slots_pin_the_same_tree(verified: Built):
    params = _params(verified, "a")
    assert _params(verified, "b") == params
    for slot in "ab":
        text = _fat_file(verified.disk, _part(verified, f"boot_{slot}")[0], "cmdline.txt")
        assert f"root=PARTLABEL=system_{slot}" in text.split()


def test_veritysetup_verifies_the_slot(verified: Built, tmp_path: Path):
    params = _params(verified, "a")
    image = _system_image(verified, params.image_size, tmp_path / "system.img")
    argv: list[str | Path] = [
        "veritysetup", "verify", "--no-superblock", f"--data-blocks={params.data_blocks}",
        f"--hash-offset={params.hash_offset}", f"--salt={params.salt}", image, image,
        params.root_hash,
    ]  # fmt: skip
    subprocess.run(argv, check=True, capture_output=True)
    raw = bytearray(image.read_bytes())
    raw[3 * BLOCK + 100] ^= 0x40
    image.write_bytes(bytes(raw))
    flipped = subprocess.run(argv, capture_output=True, text=True)
    assert flipped.returncode != 0
    assert "verification failed" in flipped.stderr.lower()


def test_release_system_image_includes_the_tree(verified: Built, built: Built):
    params = _params(verified, "a")
    manifest = release.read_manifest(verified.release)
    assert manifest.images[ImageName.SYSTEM].size == params.image_size
    plain = release.read_manifest(built.release).images[ImageName.SYSTEM].size
    assert params.hash_offset == plain  # the same filesystem, the tree after it
    assert params.salt == image_verity.content_salt(
        _system_image(built, plain, built.out.parent / "plain-system.img")
    )


def test_tree_is_under_one_percent(tmp_path: Path):
    # One tree block at least: the 1% holds from some 500 KiB up (the fleet's image: 1.2 GB).
    rootfs = make_rootfs(tmp_path / "rootfs", extra_bytes=8 * MIB)
    built = Built(rootfs, tmp_path / "out")
    assemble.assemble(request(rootfs, built.out, verity=True))
    params = _params(built, "a")
    assert params.hash_blocks == sum(verity.level_blocks(params.data_blocks))
    assert params.hash_blocks * BLOCK <= params.image_size / 100


def test_reproducible(verified: Built, tmp_path: Path):
    copy = tmp_path / "rootfs-copy"
    shutil.copytree(verified.rootfs, copy)
    again = tmp_path / "again"
    assemble.assemble(request(copy, again, verity=True))
    assert (again / "disk.img").read_bytes() == verified.disk.read_bytes()


def test_erofs_system(rootfs: Path, tmp_path: Path):
    out = tmp_path / "erofs"
    assemble.assemble(request(rootfs, out, system=SystemSpec.parse("erofs"), verity=True))
    built = Built(rootfs, out)
    params = _params(built, "b")
    image = _system_image(built, params.image_size, tmp_path / "system.img")
    data = image.read_bytes()
    verity.check_tree(lambda offset, length: data[offset : offset + length], params)


def test_image_not_whole_blocks(tmp_path: Path):
    image = tmp_path / "odd.img"
    image.write_bytes(bytes(BLOCK + 1))
    with pytest.raises(LayoutError, match="not a whole number of 4096-byte blocks"):
        image_verity.append_tree(image)
    assert image.read_bytes() == bytes(BLOCK + 1)


def test_veritysetup_missing(rootfs: Path, tmp_path: Path, capsys, monkeypatch):
    tools = tmp_path / "bin"
    tools.mkdir()
    for entry in os.environ["PATH"].split(os.pathsep):
        for tool in Path(entry).glob("*") if Path(entry).is_dir() else []:
            if tool.name != "veritysetup" and not (tools / tool.name).exists():
                (tools / tool.name).symlink_to(tool)
    monkeypatch.setenv("PATH", str(tools))
    out = tmp_path / "out"
    argv = ["assemble", "--rootfs", str(rootfs), "--out", str(out), "--version", "1.0"]
    _fails_cleanly(capsys, [*argv, "--verity"], out, "veritysetup not found")
    with pytest.raises(InputError):
        image_verity.append_tree(_sized(tmp_path / "fs.img", BLOCK))


def _sized(path: Path, size: int) -> Path:
    path.write_bytes(bytes(size))
    return path


def test_cmdline_without_room(tmp_path: Path, capsys):
    rootfs = make_rootfs(tmp_path / "long")
    (rootfs / "boot/firmware/cmdline.txt").write_text("quiet " + "x" * 860 + "\n")
    out = tmp_path / "out"
    argv = ["assemble", "--rootfs", str(rootfs), "--out", str(out), "--version", "1.0"]
    assert assemble.assemble(request(rootfs, tmp_path / "fits")) is not None
    _fails_cleanly(capsys, [*argv, "--verity"], out, "cmdline.txt for slot a would be")


def test_tree_counts_against_the_slot(tmp_path: Path, capsys):
    # A filesystem some 40 KiB short of the 8 MiB slot: it fits alone, not with its tree.
    rootfs = make_rootfs(tmp_path / "big", extra_bytes=8 * MIB - 1_732_608 - 40_960)
    sizes = ["--sizes", "config=4M,boot=16M,system=8M,data=16M", "--system", "squashfs:none"]
    argv = ["assemble", "--rootfs", str(rootfs), "--version", "1.0", *sizes]
    assert main([*argv, "--out", str(tmp_path / "plain")]) == 0
    out = tmp_path / "out"
    _fails_cleanly(capsys, [*argv, "--out", str(out), "--verity"], out, "system image is")


def test_inspect_names_the_root(verified: Built, built: Built):
    params = _params(verified, "a")
    assert describe(verified.disk).text.count(f"root: dm-verity, root hash {params.root_hash}") == 2
    assert describe(built.disk).text.count("root: not verified (no dm-verity root)") == 2


def test_a_boot_key_implies_verity(tmp_path: Path):
    """The signed boot.img carries the cmdline.txt that pins the root (ADR 0070, 0071)."""
    rootfs = make_rootfs(tmp_path / "rootfs")
    out = tmp_path / "secure"
    assemble.assemble(request(rootfs, out, boot_key=KEYS / "customer.pem"))
    report = describe(out / "disk.img").text
    assert report.count("root: dm-verity, root hash ") == 2
