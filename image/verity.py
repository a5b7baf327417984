"""``assemble --verity``: append a dm-verity hash tree to the system image (ADR 0071).

The tree is made by the real ``veritysetup format`` (cryptsetup-bin), in the same file right
after the filesystem (``--hash-offset``), without a superblock: every parameter the kernel needs
is in the slot's cmdline.txt (``fleetcore.verity``). The salt is the SHA-256 of the filesystem
image, so equal inputs still give equal bytes.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from fleetcore.errors import FormatError
from fleetcore.run import run
from fleetcore.verity import BLOCK, HASH, VerityParams, from_cmdline
from image.errors import InputError, LayoutError

TOOL = "veritysetup"
_READ = 1 << 20


def content_salt(image: Path) -> str:
    """The salt of ``image``'s tree: the SHA-256 of its bytes (reproducible, unique per image)."""
    digest = hashlib.sha256()
    with image.open("rb") as handle:
        while piece := handle.read(_READ):
            digest.update(piece)
    return digest.hexdigest()


def append_tree(image: Path) -> VerityParams:
    """Format ``image`` (a filesystem of whole 4 KiB blocks) for dm-verity, the tree appended;
    the parameters the slot's cmdline.txt must carry."""
    size = image.stat().st_size
    if size == 0 or size % BLOCK:
        raise LayoutError(
            f"system image {image.name} is {size} bytes, not a whole number of {BLOCK}-byte "
            "blocks; dm-verity hashes whole blocks",
            hint="mksquashfs pads to 4 KiB unless -nopad is given; mkfs.erofs writes 4 KiB blocks",
        )
    if shutil.which(TOOL) is None:
        raise InputError(
            f"{TOOL} not found: --verity needs it to make the hash tree",
            hint="install Debian's cryptsetup-bin",
        )
    salt = content_salt(image)
    root_file = image.with_name(f"{image.name}.roothash")
    try:
        run(
            [
                TOOL, "format", "--no-superblock", "--format=1", f"--hash={HASH}",
                f"--data-block-size={BLOCK}", f"--hash-block-size={BLOCK}",
                f"--data-blocks={size // BLOCK}", f"--hash-offset={size}", f"--salt={salt}",
                f"--root-hash-file={root_file}", image, image,
            ]
        )  # fmt: skip
        root_hash = root_file.read_text().strip()
    finally:
        root_file.unlink(missing_ok=True)
    params = VerityParams(
        data_blocks=size // BLOCK, hash_offset=size, salt=salt, root_hash=root_hash
    )
    written = image.stat().st_size
    if written != params.image_size:
        raise LayoutError(
            f"{TOOL} wrote {written} bytes for a tree expected to end at {params.image_size}"
        )
    return params


def describe(cmdline: str) -> str:
    """``inspect``'s line for a slot's root: verity with its root hash, or not verified."""
    try:
        params = from_cmdline(cmdline)
    except FormatError as err:
        return f"malformed verity argument ({err})"
    if params is None:
        return "not verified (no dm-verity root)"
    tree = params.hash_blocks * BLOCK
    return (
        f"dm-verity, root hash {params.root_hash}, {params.data_blocks} data blocks, "
        f"tree {tree} bytes at {params.hash_offset}"
    )
