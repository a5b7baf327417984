"""The updater checks the new system slot against its boot files' verity root before a trial:
the FAT reader, the tree checked while the slot is read back (one read), and the engine's
refusal."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fleetcore.layout import Slot
from fleetcore.release import ImageName
from fleetcore.verity import BLOCK, VerityParams
from fleetcore.version import Version
from fleetcore.wire import EventKind, UpdateState
from tests.updater.conftest import BOOT_SIZE
from tests.updater.device import dd
from tests.updater.releases import image_bytes
from tests.updater.servers import FleetServer
from updater import verity
from updater.disk import BootDisk, PartitionIO
from updater.engine import EngineResult
from updater.fatroot import FatError, NotFat, read_root_file
from updater.verity import VerityRefused

SALT = "a5" * 32
BASE_CMDLINE = "console=serial0,115200 root=PARTLABEL=system_b rootfstype=squashfs ro rootwait"


def fat_image(tmp: Path, files: dict[str, bytes], *, size: int = BOOT_SIZE, fat: str = "") -> bytes:
    """A FAT filesystem of ``size`` bytes (made by mkfs.vfat) holding ``files``."""
    image = tmp / "boot.vfat"
    image.unlink(missing_ok=True)
    with image.open("wb") as handle:
        handle.truncate(size)
    subprocess.run(["mkfs.vfat", "--invariant", *fat.split(), str(image)], check=True,
                   capture_output=True)  # fmt: skip
    for name, data in files.items():
        (tmp / name).write_bytes(data)
        subprocess.run(["mcopy", "-i", str(image), str(tmp / name), f"::/{name}"], check=True,
                       env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"})  # fmt: skip
    return image.read_bytes()


def system_image(tmp: Path, size: int, seed: int = 5) -> tuple[bytes, VerityParams]:
    """``size`` bytes of data with a tree appended by the real veritysetup."""
    image = tmp / "system.img"
    image.write_bytes(image_bytes(seed, size))
    root = tmp / "root.hash"
    subprocess.run(
        [
            "veritysetup", "format", "--no-superblock", f"--hash-offset={size}",
            f"--data-blocks={size // BLOCK}", f"--salt={SALT}", f"--root-hash-file={root}",
            str(image), str(image),
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    return image.read_bytes(), VerityParams(size // BLOCK, size, SALT, root.read_text().strip())


def boot_with(tmp: Path, params: VerityParams | None) -> bytes:
    arg = f" {params.kernel_arg()}" if params is not None else ""
    return fat_image(tmp, {"cmdline.txt": f"{BASE_CMDLINE}{arg}\n".encode()})


def _reader(data: bytes):
    return lambda offset, length: data[offset : offset + length]


@pytest.mark.parametrize(("size", "fat"), [(1, ""), (16, ""), (64, "-F 32")])
def test_fat_reader_reads_what_mtools_wrote(tmp_path: Path, size: int, fat: str):
    big = image_bytes(9, 50_000)
    data = fat_image(tmp_path, {"cmdline.txt": b"quiet\n", "big.bin": big}, size=size << 20,
                     fat=fat)  # fmt: skip
    assert read_root_file(_reader(data), "cmdline.txt") == b"quiet\n"
    assert read_root_file(_reader(data), "BIG.BIN") == big
    assert read_root_file(_reader(data), "config.txt") is None
    with pytest.raises(FatError, match="above the 4096 read here"):
        read_root_file(_reader(data), "big.bin", limit=4096)


def test_fat_reader_refuses_damage(tmp_path: Path):
    with pytest.raises(NotFat):
        read_root_file(_reader(image_bytes(1, BOOT_SIZE)), "cmdline.txt")
    data = bytearray(fat_image(tmp_path, {"cmdline.txt": b"x" * 5000}))
    fat_start = 512 * int.from_bytes(data[14:16], "little")
    # FAT12 entries 2 and 3: the file's first cluster points back at itself (a loop).
    data[fat_start + 3 : fat_start + 5] = bytes([0x02, 0x20])
    with pytest.raises(FatError, match="cluster chain"):
        read_root_file(_reader(bytes(data)), "cmdline.txt")
    data[11:13] = (300).to_bytes(2, "little")
    with pytest.raises(FatError, match="implausible FAT geometry"):
        read_root_file(_reader(bytes(data)), "cmdline.txt")


def _slot_b(device, tmp: Path, boot: bytes, system: bytes) -> BootDisk:
    disk = BootDisk.open(device.disk_path)
    dd(boot, device.disk_path, disk.partitions["boot_b"].offset, tmp)
    dd(system, device.disk_path, disk.partitions["system_b"].offset, tmp)
    return disk


def check(disk: BootDisk, signed_size: int | None = None) -> VerityParams | None:
    """The system slot read once, front to back, through its tree check (as verify_slot
    reads it after the boot image verified); the parameters checked, None without a root."""
    system = disk.slot_partition("system", Slot.B)
    size = system.size if signed_size is None else signed_size
    tree = verity.slot_tree(disk, Slot.B, signed_size=size)
    if tree is None:
        return None
    with PartitionIO(system, writable=False) as reader:
        for pos in range(0, size, 3 * BLOCK + 5):  # pieces not aligned to blocks
            tree.update(pos, reader.read(pos, min(3 * BLOCK + 5, size - pos)))
    tree.finish()
    return tree.params


def test_pure_python_check(device, tmp_path: Path):
    system, params = system_image(tmp_path, 4 << 20)
    disk = _slot_b(device, tmp_path, boot_with(tmp_path, params), system)
    assert check(disk) == params  # a byte range of the disk image
    flipped = bytearray(system)
    flipped[123_456] ^= 1
    disk = _slot_b(device, tmp_path, boot_with(tmp_path, params), bytes(flipped))
    with pytest.raises(VerityRefused, match="system_b: verity hash tree level 0 does not match"):
        check(disk)


def test_secure_boot_slot_pins_the_root_inside_boot_img(device, tmp_path: Path):
    """With --boot-key the partition holds only boot.img and boot.sig: the root hash is read
    from the cmdline.txt inside boot.img, so the check still runs (and still refuses)."""
    system, params = system_image(tmp_path, 4 << 20)
    inner = boot_with(tmp_path, params)
    boot = fat_image(tmp_path, {"boot.img": inner, "boot.sig": b"unchecked here\n"},
                     size=BOOT_SIZE * 2)  # fmt: skip
    disk = _slot_b(device, tmp_path, boot, system)
    assert check(disk) == params
    flipped = bytearray(system)
    flipped[4096] ^= 1
    disk = _slot_b(device, tmp_path, boot, bytes(flipped))
    with pytest.raises(VerityRefused, match="system_b: verity hash tree level 0 does not match"):
        check(disk)
    not_fat = fat_image(tmp_path, {"boot.img": image_bytes(2, 8192)}, size=BOOT_SIZE * 2)
    disk = _slot_b(device, tmp_path, not_fat, system)
    with pytest.raises(VerityRefused, match="boot_b: boot.img holds no FAT filesystem"):
        check(disk)


def test_no_verity_root_nothing_to_check(device, tmp_path: Path):
    disk = _slot_b(device, tmp_path, boot_with(tmp_path, None), image_bytes(3, 4096))
    assert check(disk) is None


def test_malformed_argument_is_refused(device, tmp_path: Path):
    boot = fat_image(tmp_path, {"cmdline.txt": b"root=x fleet.verity=1:sha256:4096:7\n"})
    disk = _slot_b(device, tmp_path, boot, image_bytes(3, 4096))
    with pytest.raises(VerityRefused, match="boot_b: fleet.verity="):
        check(disk)


def test_a_tree_past_the_signed_image_is_refused(device, tmp_path: Path):
    """The read-back covers the signed image's bytes only: a tree that ends past them would
    be checked against bytes nobody signed."""
    system, params = system_image(tmp_path, 4 << 20)
    disk = _slot_b(device, tmp_path, boot_with(tmp_path, params), system)
    assert check(disk, signed_size=params.image_size) == params
    with pytest.raises(VerityRefused, match="its verity tree ends at .* past the"):
        check(disk, signed_size=params.image_size - BLOCK)


def install_v3(device, repo_template, tmp: Path, images: dict[ImageName, bytes]):
    """Publish ``images`` as release 3.0.0 and start the device's engine on it."""
    repo = repo_template.copy(tmp / "repo-copy")
    repo.publish("3.0.0", images)
    server = FleetServer(repo.path)
    try:
        engine = device.engine()
        return engine, engine.start(Version("3.0.0"), server.tuf_url)
    finally:
        server.close()


def assert_trial_or_refused(engine, result: EngineResult, refused: str | None) -> None:
    """The engine asked for a trial (``refused`` None), or failed the install with an
    ``install-failed`` event whose reason contains ``refused``."""
    state = engine.store.load()
    if refused is None:
        assert result is EngineResult.REBOOTING
        assert state.state is UpdateState.TRIAL_REBOOT
        return
    assert result is EngineResult.IDLE
    assert state.state is UpdateState.FAILED
    assert state.last_failure is not None and refused in state.last_failure
    event = engine.events.pending()[-1]
    assert event.kind is EventKind.INSTALL_FAILED
    assert refused in str(event.model_dump())


@pytest.mark.parametrize("pinned", ["right", "wrong"])
def test_engine_refuses_a_trial_that_does_not_verify(device, repo_template, tmp_path, pinned):
    """A signed release whose boot files pin another root (a build gone wrong, or a slot
    changed after it was written): read-back passes, verity does not, no trial is asked."""
    system, params = system_image(tmp_path, 4 << 20)
    if pinned == "wrong":
        params = VerityParams(params.data_blocks, params.hash_offset, params.salt, "0" * 64)
    images = {ImageName.BOOT: boot_with(tmp_path, params), ImageName.SYSTEM: system}
    refused = None if pinned == "right" else "system_b: verity root hash"
    engine, result = install_v3(device, repo_template, tmp_path, images)
    assert_trial_or_refused(engine, result, refused)
