import hashlib
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from fleetcore.release import SLOT_INDEX_DIR, ImageName, apply_patches
from image import assemble, chunkstore, disk, filesystems, release
from image.cli import main
from image.filesystems import SystemSpec
from image.layout import MIB, SECTOR
from tests.image.conftest import EPOCH, SMALL, VERSION, Built, make_rootfs, request
from tests.image.test_layout import DESIGN_AUTOBOOT

LABELS = ["config", "boot_a", "boot_b", "system_a", "system_b", "data"]


def _part(built: Built, label: str) -> tuple[int, int]:
    for p in disk.read_table(built.disk)["partitions"]:
        if p["name"] == label:
            return p["start"] * SECTOR, p["size"] * SECTOR
    raise AssertionError(label)


def _fat_file(image: Path, offset: int, name: str) -> str:
    return subprocess.run(
        ["mtype", "-i", f"{image}@@{offset}", f"::/{name}"],
        capture_output=True,
        check=True,
        env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"},
    ).stdout.decode()


def _read(image: Path, offset: int, size: int) -> bytes:
    with image.open("rb") as handle:
        handle.seek(offset)
        return handle.read(size)


def test_partition_table(built: Built):
    table = disk.read_table(built.disk)
    assert table["label"] == "gpt"
    parts = table["partitions"]
    assert [p["name"] for p in parts] == LABELS
    sizes = [SMALL.config, SMALL.boot, SMALL.boot, SMALL.system, SMALL.system, SMALL.data]
    assert [p["size"] * SECTOR for p in parts] == [s * MIB for s in sizes]
    assert all(p["start"] * SECTOR % MIB == 0 for p in parts)
    assert parts[3]["type"] == "B921B045-1DF0-41C3-AF44-4C6F280D3FAE"


def test_autoboot_txt_is_the_design_text(built: Built):
    assert _fat_file(built.disk, _part(built, "config")[0], "autoboot.txt") == DESIGN_AUTOBOOT


@pytest.mark.parametrize("slot", ["a", "b"])
def test_each_cmdline_names_its_own_system(built: Built, slot: str):
    text = _fat_file(built.disk, _part(built, f"boot_{slot}")[0], "cmdline.txt")
    args = text.split()
    assert f"root=PARTLABEL=system_{slot}" in args
    assert [a for a in args if a.startswith("root=")] == [f"root=PARTLABEL=system_{slot}"]
    assert "ro" in args and "rw" not in args
    assert "rootfstype=squashfs" in args
    assert "console=serial0,115200" in args


def test_boot_files_copied(built: Built):
    offset = _part(built, "boot_a")[0]
    assert "kernel=vmlinuz" in _fat_file(built.disk, offset, "config.txt")


def test_slot_a_populated_slot_b_empty(built: Built):
    start, size = _part(built, "system_a")
    assert _read(built.disk, start, 4) == b"hsqs"  # squashfs magic
    start, size = _part(built, "system_b")
    assert _read(built.disk, start, size) == bytes(size)


def test_chunk_indexes_reassemble_the_images(built: Built, tmp_path: Path):
    manifest = release.read_manifest(built.release)
    assert set(manifest.images) == set(ImageName)
    for name, label in [(ImageName.BOOT, "boot_a"), (ImageName.SYSTEM, "system_a")]:
        index = chunkstore.load_index_file(built.release / release.index_file(name))
        assert index.image_sha256 == manifest.images[name].sha256
        out = tmp_path / f"{name}.img"
        chunkstore.reassemble(index, built.release, out)
        start, _size = _part(built, label)
        assert out.read_bytes() == _read(built.disk, start, index.image_size)


def slot_b_boot(built: Built, scratch: Path) -> bytes:
    """Slot B's boot image as the updater writes it: slot A's from the release's chunks, with
    the manifest's patches applied chunk by chunk, as the updater streams them."""
    manifest = release.read_manifest(built.release)
    _sha, patches = manifest.written(ImageName.BOOT, "b")
    index = chunkstore.load_index_file(built.release / release.index_file(ImageName.BOOT))
    out = scratch / "boot-a.vfat"
    chunkstore.reassemble(index, built.release, out)
    data = out.read_bytes()
    return b"".join(
        apply_patches(data[off : off + c.size], off, patches)
        for off, c in zip(index.offsets(), index.chunks, strict=True)
    )


def test_slot_b_boot_is_slot_a_boot_plus_manifest_patches(built: Built, tmp_path: Path):
    manifest = release.read_manifest(built.release)
    sha, patches = manifest.written(ImageName.BOOT, "b")
    assert 0 < len(patches) <= 8
    assert sum(len(p.data) // 2 for p in patches) < 64
    written = slot_b_boot(built, tmp_path)
    start, size = _part(built, "boot_b")
    assert written == _read(built.disk, start, size)
    assert hashlib.sha256(written).hexdigest() == sha
    assert manifest.written(ImageName.BOOT, "a") == (manifest.images[ImageName.BOOT].sha256, ())
    assert manifest.written(ImageName.SYSTEM, "b")[1] == ()


def test_data_partition_holds_slot_a_indexes(built: Built, tmp_path: Path):
    """The updater seeds its first install from these (updater.paths.Roots.slot_dir)."""
    start, size = _part(built, "data")
    data = tmp_path / "data.ext4"
    data.write_bytes(_read(built.disk, start, size))
    slot_a = f"/{SLOT_INDEX_DIR}/a"
    listing = _debugfs(data, f"ls -l {slot_a}")
    for image in ImageName:
        name = release.index_file(image)
        assert name in listing
        dumped = tmp_path / name
        _debugfs(data, f"dump {slot_a}/{name} {dumped}")
        assert dumped.read_bytes() == (built.release / name).read_bytes()
    for path in ["/", "/lost+found", slot_a, f"{slot_a}/{release.index_file(ImageName.SYSTEM)}"]:
        stat = _debugfs(data, f"stat {path}")
        assert "User:     0   Group:     0" in stat
        for field in ("ctime", "atime", "mtime", "crtime"):
            assert f"{field}: {EPOCH:#x}:00000000" in stat, (path, stat)


def _debugfs(image: Path, request: str) -> str:
    return subprocess.run(
        ["debugfs", "-R", request, image], capture_output=True, check=True
    ).stdout.decode()


def test_reproducible(built: Built, tmp_path: Path):
    copy = tmp_path / "rootfs-copy"
    shutil.copytree(built.rootfs, copy)
    again = tmp_path / "again"
    assemble.assemble(request(copy, again))
    assert (again / "disk.img").read_bytes() == built.disk.read_bytes()
    for path in sorted(built.release.rglob("*")):
        twin = again / "release" / path.relative_to(built.release)
        assert twin.exists(), twin
        if path.is_file():
            assert twin.read_bytes() == path.read_bytes(), path


def test_epoch_is_recorded(built: Built):
    assert release.read_manifest(built.release).created == EPOCH


def _fails_cleanly(capsys, argv: list[str], out: Path, expected: str) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("fleet-image: error: ")]
    assert len(errors) == 1
    assert expected in errors[0]
    assert "Traceback" not in err
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if ".partial" in p.name]


def test_missing_rootfs(tmp_path: Path, capsys):
    out = tmp_path / "out"
    argv = ["assemble", "--rootfs", str(tmp_path / "nope"), "--out", str(out), "--version", "1.0"]
    _fails_cleanly(capsys, argv, out, "is not a folder")


def test_rootfs_larger_than_slot(tmp_path: Path, capsys):
    rootfs = make_rootfs(tmp_path / "big", extra_bytes=10 * MIB)
    out = tmp_path / "out"
    argv = [
        "assemble", "--rootfs", str(rootfs), "--out", str(out), "--version", "1.0",
        "--sizes", "config=4M,boot=16M,system=8M,data=16M",
    ]  # fmt: skip
    _fails_cleanly(capsys, argv, out, "system image is")


def test_boot_files_larger_than_boot_partition(tmp_path: Path, capsys):
    rootfs = make_rootfs(tmp_path / "bigboot")
    (rootfs / "boot/firmware/huge.bin").write_bytes(bytes(20 * MIB))
    out = tmp_path / "out"
    argv = [
        "assemble", "--rootfs", str(rootfs), "--out", str(out), "--version", "1.0",
        "--sizes", "config=4M,boot=16M,system=24M,data=16M",
    ]  # fmt: skip
    _fails_cleanly(capsys, argv, out, "boot files need")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--sizes", "boot=lots"], "invalid size"),
        (["--system", "ext4"], "invalid system image spec"),
        (["--system", "squashfs:zstd:23"], "levels 1-22"),
        (["--system", "squashfs:xz:6"], "takes no compression level"),
        (["--system", "erofs:lz4hc:fast"], "invalid system image spec"),
        (["--hardware", "pi6"], "invalid hardware list"),
        (["--hardware", ","], "name at least one family"),
        (["--hardware", "pi4,pi3"], "--hardware pi3: Raspberry Pi 3 has no tryboot A/B boot"),
        (["--hardware", "zero2w"], "Raspberry Pi Zero 2 W has no tryboot A/B boot"),
        (["--hardware", "cm4"], "releases target a family, and cm4 is in pi4"),
        (["--hardware", "pi500"], "and pi500 is in pi5"),
    ],
)
def test_malformed_arguments(rootfs: Path, tmp_path: Path, capsys, extra, expected):
    out = tmp_path / "out"
    argv = ["assemble", "--rootfs", str(rootfs), "--out", str(out), "--version", "1.0", *extra]
    _fails_cleanly(capsys, argv, out, expected)


def test_bad_version(rootfs: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    argv = ["assemble", "--rootfs", str(rootfs), "--out", str(out), "--version", "1.0-rc1"]
    _fails_cleanly(capsys, argv, out, "invalid version")


def test_rootfs_without_boot_files(tmp_path: Path, capsys):
    (tmp_path / "bare/etc").mkdir(parents=True)
    out = tmp_path / "out"
    argv = ["assemble", "--rootfs", str(tmp_path / "bare"), "--out", str(out), "--version", "1"]
    _fails_cleanly(capsys, argv, out, "boot/firmware")


def test_erofs_system(rootfs: Path, tmp_path: Path):
    out = tmp_path / "erofs"
    manifest = assemble.assemble(request(rootfs, out, system=SystemSpec.parse("erofs")))
    assert manifest.system_format.value == "erofs"
    start, _size = _part(Built(rootfs, out), "system_a")
    assert _read(out / "disk.img", start + 1024, 4) == b"\xe2\xe1\xf5\xe0"  # erofs magic
    text = _fat_file(out / "disk.img", _part(Built(rootfs, out), "boot_b")[0], "cmdline.txt")
    assert "rootfstype=erofs" in text.split()


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        ("squashfs:zstd:3", "compression-level 3"),
        ("squashfs:zstd", "compression-level 6"),  # the fleet's default, ADR 0010
        ("erofs:lz4hc:9", None),
    ],
)
def test_compression_level(rootfs: Path, tmp_path: Path, text: str, flag: str | None):
    spec = SystemSpec.parse(text)
    assert str(spec) == text
    image = tmp_path / "system.img"
    filesystems.make_system(
        image, src=rootfs, spec=spec, epoch=EPOCH, fs_uuid=str(uuid.UUID(int=1)), exclude=[]
    )
    if flag is not None:
        info = subprocess.run(["unsquashfs", "-s", image], capture_output=True, check=True)
        assert flag in info.stdout.decode()
    else:
        assert _read(image, 1024, 4) == b"\xe2\xe1\xf5\xe0"  # erofs magic


def test_system_image_is_the_rootfs_without_boot_files(built: Built, tmp_path: Path):
    index = chunkstore.load_index_file(built.release / release.index_file(ImageName.SYSTEM))
    image = tmp_path / "system.squashfs"
    chunkstore.reassemble(index, built.release, image)
    tree = tmp_path / "tree"
    subprocess.run(["unsquashfs", "-q", "-n", "-d", tree, image], capture_output=True, check=True)
    assert (tree / "usr/bin/tool7").read_bytes() == (built.rootfs / "usr/bin/tool7").read_bytes()
    assert (tree / "boot/firmware").is_dir()
    assert list((tree / "boot/firmware").iterdir()) == []
    # The updater reads the running version from the image (Roots.image_version_file).
    assert (tree / "etc/metrica-fleet/version").read_text() == f"{VERSION}\n"


def test_ext4_is_reproducible_without_source_date_epoch(tmp_path: Path):
    """Epoch 0 (no SOURCE_DATE_EPOCH): e2fsprogs reads a fake time of 0 as none and would take
    the clock, so two builds a second apart differed in their superblock times."""
    content = tmp_path / "content"
    (content / "fleet").mkdir(parents=True)
    (content / "fleet/file").write_text("x")
    images = []
    for name in ("first.ext4", "second.ext4"):
        out = tmp_path / name
        filesystems.make_ext4(out, size=8 * MIB, label="data", fs_uuid=str(uuid.UUID(int=1)),
                              epoch=0, content=content)  # fmt: skip
        images.append(hashlib.sha256(out.read_bytes()).hexdigest())
        time.sleep(1.1)  # the clock's second changes between the builds
    assert images[0] == images[1]
