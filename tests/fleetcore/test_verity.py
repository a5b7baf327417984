"""The dm-verity kernel argument and the pure-Python tree check, against real veritysetup."""

import subprocess
from pathlib import Path

import pytest

from fleetcore import verity
from fleetcore.errors import FormatError
from fleetcore.verity import BLOCK, VerityMismatch, VerityParams

FIXTURES = Path(__file__).parent / "fixtures/verity"
SALT = "5a" * 32


def _lines(name: str) -> list[str]:
    text = (FIXTURES / name).read_text()
    return [line for line in text.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("value", _lines("good-args.txt"))
def test_known_good_arguments_round_trip(value: str):
    params = VerityParams.parse_arg(value)
    assert params.kernel_arg() == f"fleet.verity={value}"
    assert verity.from_cmdline(f"console=tty1 fleet.verity={value} rootwait") == params


@pytest.mark.parametrize("line", _lines("bad-args.txt"))
def test_known_bad_arguments_are_refused(line: str):
    value, expected = line.split(" => ")
    with pytest.raises(FormatError, match=expected):
        VerityParams.parse_arg(value)


def test_cmdline_without_verity():
    assert verity.from_cmdline("console=tty1 root=PARTLABEL=system_a ro rootwait\n") is None


def _format(image: Path) -> VerityParams:
    """Append a tree with the real veritysetup; its root hash."""
    size = image.stat().st_size
    out = subprocess.run(
        [
            "veritysetup", "format", "--no-superblock", f"--hash-offset={size}",
            f"--data-blocks={size // BLOCK}", f"--salt={SALT}", image, image,
        ],
        capture_output=True, check=True, text=True,
    ).stdout  # fmt: skip
    root = next(line.split()[-1] for line in out.splitlines() if line.startswith("Root hash:"))
    return VerityParams(size // BLOCK, size, SALT, root)


def _reader(image: Path):
    data = image.read_bytes()
    return lambda offset, length: data[offset : offset + length]


# 1 block (no tree levels), 129 blocks (two levels), 20000 blocks (three levels, a partial
# last block in each).
@pytest.mark.parametrize("blocks", [1, 129, 20000])
def test_tree_matches_veritysetup(tmp_path: Path, blocks: int):
    image = tmp_path / "fs.img"
    image.write_bytes(bytes(range(256)) * (blocks * BLOCK // 256))
    params = _format(image)
    assert image.stat().st_size == params.image_size
    verity.check_tree(_reader(image), params)


@pytest.mark.parametrize("where", ["data", "tree", "root"])
def test_one_flipped_byte_fails(tmp_path: Path, where: str):
    image = tmp_path / "fs.img"
    image.write_bytes(bytes(range(256)) * (300 * BLOCK // 256))
    params = _format(image)
    offset = {"data": 5 * BLOCK + 7, "tree": params.hash_offset + 40, "root": 0}[where]
    if where == "root":
        params = VerityParams(params.data_blocks, params.hash_offset, SALT, "0" * 64)
    else:
        raw = bytearray(image.read_bytes())
        raw[offset] ^= 1
        image.write_bytes(bytes(raw))
    with pytest.raises(VerityMismatch):
        verity.check_tree(_reader(image), params)


@pytest.mark.parametrize("piece", [1000, BLOCK, 7 * BLOCK + 3, 1 << 20])
def test_one_front_to_back_read_in_any_pieces_checks_the_same_tree(tmp_path: Path, piece: int):
    """TreeCheck is fed the image as the updater reads it back: the same verdicts for any
    piece size, and an image cut short before its tree ends is refused."""
    image = tmp_path / "fs.img"
    image.write_bytes(bytes(range(256)) * (20000 * BLOCK // 256))
    params = _format(image)
    data = image.read_bytes()

    def fed(raw: bytes) -> verity.TreeCheck:
        check = verity.TreeCheck(params)
        for pos in range(0, len(raw), piece):
            check.update(raw[pos : pos + piece])
        return check

    fed(data).finish()
    fed(data + bytes(3 * BLOCK)).finish()  # the rest of the partition is not the tree's
    for where in (5 * BLOCK + 7, params.hash_offset + 40, len(data) - 1):
        flipped = bytearray(data)
        flipped[where] ^= 1
        with pytest.raises(VerityMismatch, match="does not match"):
            fed(bytes(flipped)).finish()
    with pytest.raises(VerityMismatch, match="ends at"):
        fed(data[: len(data) - BLOCK]).finish()
