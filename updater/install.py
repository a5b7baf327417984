"""Write a release into the inactive slot: sequential, seeded, resumable, verified.

For each image (boot, then system) the chunks are written in order. A chunk the active slot
already holds (the seed: that slot's chunk index kept on /data) is copied locally after its
bytes are re-hashed; the rest are fetched a few at a time over keep-alive connections. Every
``checkpoint_bytes`` the partition is fsynced and the next chunk number saved, so an
interrupted install resumes there; chunks past the checkpoint that already reached the disk
are recognised by hash and not fetched again. Memory is bounded by the fetch window, not by
the image size.

A chunk the seed lacks but a delta of the release makes from seed chunks (``DeltaPlan``, ADR
0073) is fetched as that delta, pipelined like chunks, and decoded against its bases read
from the active slot; a delta that is missing, corrupt or whose bases no longer match falls
back to the full chunk, with a log line.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from fleetcore.atomic import atomic_write
from fleetcore.delta import Delta
from fleetcore.errors import FormatError
from fleetcore.layout import Slot
from fleetcore.persisted import LEGACY, dump, load
from fleetcore.release import BytePatch, ImageName, Manifest, apply_patches
from fleetcore.version import Version
from updater import bootimage, verity
from updater.bootkeys import BootTrust
from updater.chunkindex import CompactIndex, SeedMap
from updater.chunks import ChunkSource, decode_delta
from updater.config import TransferConfig
from updater.deltas import DeltaPlan, request
from updater.disk import BootDisk, PartitionIO
from updater.errors import ChunkError, DiskError, ImageMismatch, NoSpace, SpaceError
from updater.paths import Roots

log = logging.getLogger(__name__)

IMAGE_ORDER = (ImageName.BOOT, ImageName.SYSTEM)
_READ = 1 << 20

ProgressCallback = Callable[[ImageName, int, int], None]


class Progress(BaseModel):
    """How far the install of ``version`` into ``slot`` got: durable on /data.

    A versioned device file (:mod:`fleetcore.persisted`, format 1.0 written without the key);
    one that cannot be read, or a newer major, only restarts the install from its first chunk.
    """

    model_config = ConfigDict(extra="ignore")

    version: Version
    slot: Slot
    done: list[ImageName] = []
    image: ImageName = ImageName.BOOT
    next_chunk: int = 0


class ProgressFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, version: Version, slot: Slot) -> tuple[Progress, bool]:
        """The saved progress of this install, and whether there was any."""
        try:
            raw = self.path.read_bytes()
            progress = Progress.model_validate(load(raw, current=LEGACY, what=str(self.path)))
        except (OSError, FormatError, ValidationError):
            return Progress(version=version, slot=slot), False
        if progress.version != version or progress.slot != slot:
            return Progress(version=version, slot=slot), False
        return progress, True

    def save(self, progress: Progress) -> None:
        atomic_write(self.path, dump(progress.model_dump(mode="json"), current=LEGACY))

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


class Seed:
    """Chunks of the active slot, read from its partitions and re-verified before use."""

    def __init__(self, disk: BootDisk, active: Slot, indexes: list[CompactIndex]) -> None:
        self.map = SeedMap(indexes)
        self.readers = {
            image: PartitionIO(disk.slot_partition(image.value, active), writable=False)
            for image in self.map.images
        }

    def read(self, digest: bytes) -> bytes | None:
        found = self.map.find(digest)
        if found is None:
            return None
        image, offset, size = found
        try:
            data = self.readers[image].read(offset, size)
        except (DiskError, OSError) as err:
            # A seed index that does not describe this slot (another image, a larger one):
            # seeding is an optimisation, so the chunk is fetched instead.
            log.warning(
                "seed chunk %s unreadable on the active slot (%s); fetching it", digest.hex(), err
            )
            return None
        if hashlib.sha256(data).digest() != digest:
            log.warning("seed chunk %s changed on the active slot; fetching it", digest.hex())
            return None
        return data

    def read_bases(self, delta: Delta) -> bytes | None:
        """The base bytes of a delta, each base chunk re-verified, or None."""
        parts = []
        for base in delta.bases:
            data = self.read(bytes.fromhex(base.sha256))
            if data is None:
                return None
            parts.append(data)
        return b"".join(parts)

    def close(self) -> None:
        for reader in self.readers.values():
            reader.close()


class Origin(StrEnum):
    PRESENT = "present"
    SEED = "seed"
    COPY = "copy"  # the same content appeared earlier in this image: copied from the new slot
    DELTA = "delta"  # fetched as a delta against seed chunks
    FETCH = "fetch"


@dataclass
class InstallStats:
    seeded_chunks: int = 0
    present_chunks: int = 0
    copied_chunks: int = 0
    fetched_chunks: int = 0
    delta_chunks: int = 0
    delta_fallbacks: int = 0  # deltas refused or unusable: their full chunks were fetched
    written_bytes: int = 0


@dataclass
class _Pending:
    number: int
    origin: Origin
    future: Future[None] | None = None
    earlier: int = -1  # for COPY: the chunk number already holding this content


class SlotWriter:
    """Installs images into the inactive slot's partitions; never opens the active slot."""

    def __init__(
        self,
        *,
        disk: BootDisk,
        roots: Roots,
        active: Slot,
        target: Slot,
        source: ChunkSource,
        seed: Seed | None,
        config: TransferConfig,
        progress: ProgressFile,
        on_progress: ProgressCallback | None = None,
        tick: Callable[[], None] = lambda: None,
        patches: Mapping[ImageName, tuple[BytePatch, ...]] | None = None,
        deltas: DeltaPlan | None = None,
    ) -> None:
        self.disk, self.roots, self.active, self.target = disk, roots, active, target
        # Slot-specific bytes (slot B's cmdline.txt names system_b), applied as chunks land.
        self.patches = dict(patches or {})
        self.source, self.seed, self.config = source, seed, config
        self.progress_file = progress
        self.on_progress = on_progress
        self.tick = tick
        # Deltas are only usable against a seed: their bases are seed chunks.
        self.deltas = deltas if seed is not None else None
        self.stats = InstallStats()
        self._stats_lock = threading.Lock()

    def check_space(self, manifest: Manifest, *, data: Path) -> None:
        """Refuse images larger than their partition or the cap, and a nearly full /data."""
        free = shutil.disk_usage(data).free
        if free < self.config.min_free_data_bytes:
            raise NoSpace(
                f"{data} has {free} bytes free, below the {self.config.min_free_data_bytes} "
                "the updater keeps for its state and queue"
            )
        for image in IMAGE_ORDER:
            size = manifest.images[image].size
            part = self.disk.slot_partition(image.value, self.target)
            if size > part.size:
                raise SpaceError(
                    f"{image} image is {size} bytes; partition {part.label} has {part.size}"
                )
            if size > self.config.max_image_bytes:
                raise SpaceError(
                    f"{image} image is {size} bytes, above the cap of {self.config.max_image_bytes}"
                )

    def install(self, version: Version, indexes: dict[ImageName, CompactIndex]) -> None:
        progress, saved = self.progress_file.load(version, self.target)
        for image in IMAGE_ORDER:
            if image in progress.done:
                continue
            resuming = saved and progress.image == image
            if not resuming:  # durable before the first write, so a restart knows to probe
                progress.image, progress.next_chunk = image, 0
                self.progress_file.save(progress)
            self._write_image(indexes[image], progress, probe=resuming)
            progress.done.append(image)
            progress.next_chunk = 0
            self.progress_file.save(progress)

    def _write_image(self, index: CompactIndex, progress: Progress, *, probe: bool) -> None:
        part = self.disk.slot_partition(index.image.value, self.target)
        first = progress.next_chunk
        depth = self.config.pipeline_depth
        window_limit = 2 * self.config.parallel_fetches * depth
        # After an interruption, chunks past the checkpoint may already be on disk: fetched
        # chunks are written by the fetch threads as they arrive. Probe that stretch by hash.
        probe_end = 0
        if probe and first < len(index):
            window_bytes = window_limit * max(index.sizes)
            probe_end = index.offsets[first] + self.config.checkpoint_bytes + window_bytes
        with (
            self.disk.open_for_write(part, active=self.active, roots=self.roots) as out,
            ThreadPoolExecutor(self.config.parallel_fetches, "chunk-fetch") as pool,
        ):
            window: deque[_Pending] = deque()
            ahead = first
            since_checkpoint = 0
            # Images repeat content (zeroed space, duplicate files): each digest is fetched
            # once, and later occurrences are copied from where it landed in the new slot.
            first_seen: dict[bytes, int] = {}

            def refill() -> None:
                """Top the window up in one go, so fetches leave in batches of ``depth``."""
                nonlocal ahead
                batches: dict[Origin, list[_Pending]] = {Origin.FETCH: [], Origin.DELTA: []}
                fetchers = {Origin.FETCH: self._fetch_into, Origin.DELTA: self._delta_into}

                def send() -> None:
                    for origin, batch in batches.items():
                        if batch:
                            numbers = [p.number for p in batch]
                            future = pool.submit(fetchers[origin], out, index, numbers)
                            for pending in batch:
                                pending.future = future
                            batch.clear()

                while ahead < len(index) and len(window) < window_limit:
                    earlier = first_seen.setdefault(index.digest(ahead), ahead)
                    probing = index.offsets[ahead] < probe_end
                    if earlier != ahead and not probing:
                        pending = _Pending(ahead, Origin.COPY, earlier=earlier)
                    else:
                        pending = _Pending(ahead, self._origin(index, ahead, out, probing))
                    window.append(pending)
                    ahead += 1
                    if pending.origin in batches:
                        batches[pending.origin].append(pending)
                        if len(batches[pending.origin]) >= depth:
                            send()
                send()

            try:
                for number in range(first, len(index)):
                    if len(window) <= window_limit // 2:
                        refill()
                    self.tick()
                    pending = window.popleft()
                    assert pending.number == number
                    self._place(index, pending, out)
                    progress.next_chunk = number + 1
                    since_checkpoint += index.sizes[number]
                    if since_checkpoint >= self.config.checkpoint_bytes:
                        self._checkpoint(out, progress, index)
                        since_checkpoint = 0
            finally:
                for pending in window:
                    if pending.future is not None:
                        pending.future.cancel()
                self._checkpoint(out, progress, index)

    def _fetch_into(self, out: PartitionIO, index: CompactIndex, numbers: list[int]) -> None:
        """Fetch chunks and write each at once, so a chunk that arrived is never fetched again."""
        requests = [(index.digest(n).hex(), index.sizes[n]) for n in numbers]
        for number, data in zip(numbers, self.source.get_many(requests), strict=True):
            self._write(out, index, number, data)

    def _delta_into(self, out: PartitionIO, index: CompactIndex, numbers: list[int]) -> None:
        """Fetch chunks as deltas, pipelined; decode each against its bases from the seed.

        A delta that cannot be used (its bases unreadable, the delta missing, corrupt, too
        large or not making the signed bytes) is logged and its full chunk fetched; the rest
        of the batch goes on. A transfer error (the store unreachable) is not a delta's fault
        and ends the install as for chunks, to resume later.
        """
        assert self.deltas is not None and self.seed is not None
        wanted = []
        for number in numbers:  # the plan and the seed map are fixed: usable when planned
            delta = self.deltas.usable(index.digest(number), self.seed.map)
            assert delta is not None
            wanted.append((number, delta))
        while wanted:
            done = 0
            try:
                fetched = self.source.get_raw([request(d) for _, d in wanted])
                for (number, delta), diff in zip(wanted, fetched, strict=True):
                    base = self.seed.read_bases(delta)
                    if base is None:
                        raise ChunkError(f"a base of the delta of chunk {delta.target} is gone")
                    digest = index.digest(number).hex()
                    data = decode_delta(diff, base, sha256=digest, size=index.sizes[number])
                    self._write(out, index, number, data)
                    done += 1
            except ChunkError as err:
                number = wanted[done][0]
                log.warning("delta refused (%s); fetching the full chunk", err)
                with self._stats_lock:
                    self.stats.delta_fallbacks += 1
                self._fetch_into(out, index, [number])
                wanted = wanted[done + 1 :]
            else:
                wanted = []

    def _write(self, out: PartitionIO, index: CompactIndex, number: int, data: bytes) -> None:
        offset = index.offsets[number]
        patches = self.patches.get(index.image)
        out.write(offset, apply_patches(data, offset, patches) if patches else data)

    def _origin(self, index: CompactIndex, number: int, out: PartitionIO, probe: bool) -> Origin:
        digest = index.digest(number)
        if probe:
            data = out.read(index.offsets[number], index.sizes[number])
            if hashlib.sha256(data).digest() == digest:
                return Origin.PRESENT
        if self.seed is not None and self.seed.map.find(digest) is not None:
            return Origin.SEED
        if self.deltas is not None and self.seed is not None:
            return Origin.DELTA if self.deltas.usable(digest, self.seed.map) else Origin.FETCH
        return Origin.FETCH

    def _place(self, index: CompactIndex, pending: _Pending, out: PartitionIO) -> None:
        number, size = pending.number, index.sizes[pending.number]
        if pending.origin is Origin.PRESENT:
            self.stats.present_chunks += 1
            return
        if pending.origin is Origin.COPY and self._copy(index, pending, out):
            self.stats.copied_chunks += 1
            self.stats.written_bytes += size
            return
        if pending.origin is Origin.SEED:
            assert self.seed is not None
            data = self.seed.read(index.digest(number))
            if data is not None:
                self._write(out, index, number, data)
                self.stats.seeded_chunks += 1
                self.stats.written_bytes += size
                return
            self._fetch_into(out, index, [number])
        elif pending.origin is Origin.COPY:
            self._fetch_into(out, index, [number])
        else:
            assert pending.future is not None
            pending.future.result()
            if pending.origin is Origin.DELTA:
                self.stats.delta_chunks += 1
                self.stats.written_bytes += size
                return
        self.stats.fetched_chunks += 1
        self.stats.written_bytes += size

    def _copy(self, index: CompactIndex, pending: _Pending, out: PartitionIO) -> bool:
        """Copy a repeated chunk from its earlier place in the new slot, already written.

        Placement is in index order, so the earlier chunk is on disk. Its bytes are re-hashed:
        a slot patch applied there (slot B's cmdline.txt) makes them differ, and then the
        chunk is fetched instead.
        """
        earlier = pending.earlier
        data = out.read(index.offsets[earlier], index.sizes[earlier])
        if hashlib.sha256(data).digest() != index.digest(pending.number):
            return False
        self._write(out, index, pending.number, data)
        return True

    def _checkpoint(self, out: PartitionIO, progress: Progress, index: CompactIndex) -> None:
        out.sync()
        self.progress_file.save(progress)
        if self.on_progress is not None and progress.next_chunk > 0:
            last = progress.next_chunk - 1
            done = index.offsets[last] + index.sizes[last]
            self.on_progress(index.image, done, index.image_size)


@dataclass(frozen=True)
class SlotChecks:
    """What the read-back of a slot proved besides its signed hashes."""

    boot_img_sha256: str | None
    """boot.img's digest, which boot.sig names (None: an unsigned slot, no boot.sig)."""
    boot_img_fused: bool
    """Whether that digest came from the read-back's own bytes (False: boot.img's clusters
    were out of order on the card and it was read again on its own)."""
    verity_root: str | None
    """The dm-verity root hash the system slot verified against (None: none pinned)."""
    boot_key: str | None = None
    """The fingerprint of the trusted boot key that signed boot.sig (None: the running image
    trusts no boot keys, so the signature was left to the bootloader)."""

    def __str__(self) -> str:
        said = ["the signed images"]
        if self.boot_img_sha256 is not None:
            how = "in the read-back" if self.boot_img_fused else "read again, out of order"
            said.append(f"boot.img {self.boot_img_sha256[:16]}... as boot.sig names ({how})")
        if self.boot_key is not None:
            said.append(f"boot.sig signed by trusted key {self.boot_key[:16]}...")
        if self.verity_root is not None:
            said.append(f"verity root {self.verity_root[:16]}...")
        return ", ".join(said)


def verify_slot(
    disk: BootDisk, slot: Slot, manifest: Manifest, trust: BootTrust | None
) -> SlotChecks:
    """Read the written images back (past the page cache) and compare with the signed hashes.

    The same reads check a secure-boot slot's boot.img against its boot.sig
    (:class:`~updater.bootimage.BootImageRefused`), boot.sig's signature against the boot keys
    the running image trusts (``trust``; :class:`~updater.bootkeys.UntrustedBootImage`), and
    the system image's verity tree, when the boot image just verified pins one
    (:class:`~updater.verity.VerityRefused`)."""
    boot = disk.slot_partition("boot", slot)
    boot_size = manifest.images[ImageName.BOOT].size
    with PartitionIO(boot, writable=False) as reader:
        reader.drop_cache(0, boot_size)  # first: boot.img is located in the bytes read back
        boot_img = bootimage.read_back_check(
            reader.read, boot.label, signed_size=boot_size, trust=trust
        )
        feed = None if boot_img is None else boot_img.update
        _read_back(reader, manifest, ImageName.BOOT, slot, feed)
        boot_img_sha256 = None if boot_img is None else boot_img.finish()
    system_size = manifest.images[ImageName.SYSTEM].size
    tree = verity.slot_tree(disk, slot, signed_size=system_size)
    with PartitionIO(disk.slot_partition("system", slot), writable=False) as reader:
        reader.drop_cache(0, system_size)
        _read_back(reader, manifest, ImageName.SYSTEM, slot, None if tree is None else tree.update)
    if tree is not None:
        tree.finish()
    return SlotChecks(
        boot_img_sha256=boot_img_sha256,
        boot_img_fused=boot_img is not None and boot_img.fused,
        verity_root=None if tree is None else tree.params.root_hash,
        boot_key=None if boot_img is None else boot_img.signed_by,
    )


def _read_back(
    reader: PartitionIO,
    manifest: Manifest,
    image: ImageName,
    slot: Slot,
    feed: Callable[[int, bytes], None] | None,
) -> None:
    """Read ``image``'s signed size from the start of its partition, each piece also to
    ``feed`` with its offset; :class:`ImageMismatch` unless it is the signed image."""
    size = manifest.images[image].size
    expected, _ = manifest.written(image, "b" if slot is Slot.B else "a")
    digest = hashlib.sha256()
    pos = 0
    while pos < size:
        data = reader.read(pos, min(_READ, size - pos))
        digest.update(data)
        if feed is not None:
            feed(pos, data)
        pos += len(data)
    if digest.hexdigest() != expected:
        raise ImageMismatch(
            f"{reader.partition.label} does not read back as the signed {image} image of "
            f"{manifest.version} (sha256 {digest.hexdigest()[:16]}..., "
            f"signed {expected[:16]}...)"
        )
